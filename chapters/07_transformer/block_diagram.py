"""Draws block.png, the lesson's diagram of one pre-norm GPT block (run it to redraw):

python chapters/07_transformer/block_diagram.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

# (label, y, colour) from bottom to top; x is the stream's column
BOXES = [
    ("LayerNorm ln_1", 2.0, "#fde9c9"),
    (
        "CausalSelfAttention\nc_attn -> q, k, v (B, nh, T, hs)\nSDPA(is_causal) -> c_proj",
        3.3,
        "#cfe3f7",
    ),
    ("LayerNorm ln_2", 5.3, "#fde9c9"),
    ("MLP\nc_fc (C -> 4C), GELU, c_proj (4C -> C)", 6.6, "#d8efd3"),
]


def draw(path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 8.2))
    ax.set(xlim=(0, 10), ylim=(0, 9.6))
    ax.axis("off")
    stream_x, box_x = 2.0, 6.0

    def arrow(a, b, **kw):
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=14, lw=1.4, **kw))

    # the residual stream: a straight line from input to output
    ax.text(stream_x, 0.35, "x  (B, T, C)", ha="center", fontsize=11)
    arrow((stream_x, 0.65), (stream_x, 4.3))
    arrow((stream_x, 4.7), (stream_x, 7.6))
    arrow((stream_x, 8.0), (stream_x, 9.0))
    ax.text(stream_x, 9.15, "x  (B, T, C)", ha="center", fontsize=11)
    for y, n in ((4.5, 1), (7.8, 2)):  # the two additions
        ax.add_patch(plt.Circle((stream_x, y), 0.2, fc="white", ec="black", lw=1.4))
        ax.text(stream_x, y, "+", ha="center", va="center", fontsize=13)
        ax.text(stream_x - 0.35, y, f"residual {n}", ha="right", va="center", fontsize=9)

    for label, y, colour in BOXES:
        h = 0.5 if "LayerNorm" in label else 1.0
        ax.add_patch(
            FancyBboxPatch(
                (box_x - 2.4, y - h / 2), 4.8, h, boxstyle="round,pad=0.08", fc=colour, ec="black"
            )
        )
        ax.text(box_x, y, label, ha="center", va="center", fontsize=9)

    def line(xs, ys):
        ax.plot(xs, ys, color="black", lw=1.4)

    # branch out of the stream into ln_1 -> attention -> back into the first +
    line((stream_x, box_x), (1.2, 1.2))
    arrow((box_x, 1.2), (box_x, 1.7))
    arrow((box_x, 2.3), (box_x, 2.75))
    line((box_x, box_x), (3.85, 4.5))
    arrow((box_x, 4.5), (stream_x + 0.22, 4.5))
    # the second branch: ln_2 -> MLP -> the second +
    line((stream_x, box_x), (4.8, 4.8))
    arrow((box_x, 4.8), (box_x, 5.0))
    arrow((box_x, 5.6), (box_x, 6.05))
    line((box_x, box_x), (7.15, 7.8))
    arrow((box_x, 7.8), (stream_x + 0.22, 7.8))
    ax.set_title(
        "One pre-norm GPT block (models/gpt.py, Block.forward):\n"
        "x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    draw(Path(__file__).resolve().parent / "block.png")
