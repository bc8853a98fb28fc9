"""The reward curve PNG: train_reward_mean per step and valid_reward_mean at each validation step."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["plot_rewards"]


def plot_rewards(history: list[dict[str, Any]], path: Path, *, title: str = "") -> None:
    """Draw the curves of `history` (metrics event data) to `path`, replacing it atomically."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    train = [(h["step"], h["train_reward_mean"]) for h in history if "train_reward_mean" in h]
    valid = [(h["step"], h["valid_reward_mean"]) for h in history if "valid_reward_mean" in h]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    try:
        if train:
            ax.plot(*zip(*train, strict=True), label="train_reward_mean", color="#9db4d6", linewidth=1)
        if valid:
            ax.plot(*zip(*valid, strict=True), label="valid_reward_mean", color="#d2553f", marker="o", linewidth=2)
        ax.set_xlabel("step")
        ax.set_ylabel("reward")
        ax.set_title(title or "reward")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
        fig.tight_layout()
        tmp = path.with_name(f".{path.name}.tmp")
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
