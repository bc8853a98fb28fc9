"""The models a job trains and serves: the catalogue of names, the policy wrapper and the tiny test model."""
