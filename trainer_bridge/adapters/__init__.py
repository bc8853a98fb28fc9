"""Graders as rewards for TRL, verl and OpenRLHF: one adapter module per trainer over a shared core."""
