"""gradekit.trainer_bridge: trainer adapters and the integrated RFT loop (being built)."""
