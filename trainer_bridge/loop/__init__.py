"""gradekit's integrated RFT loop: the job, GRPO steps, grading, metrics, events, checkpoints and eval runs."""
