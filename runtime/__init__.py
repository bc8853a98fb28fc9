"""gradekit.runtime: grading engine, sandbox, model clients, HTTP server and CLI (being built)."""
