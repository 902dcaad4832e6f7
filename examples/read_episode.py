"""Reading an episode: what the recorder wrote, topic by topic, and a picture of it.

    python examples/read_episode.py runs/examples/balance/episode [--out episode.png]

Prints every topic with its message type, count and rate; then plots the joint states
(for the gym sim: the observation) over time above a strip of camera frames.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import reflexarc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("episode", help="an episode directory (a run's <run_dir>/episode)")
    parser.add_argument("--out", default="", help="the picture; default <episode>/../episode.png")
    a = parser.parse_args()

    ep = reflexarc.Episode(a.episode)
    print(f"{'topic':<16} {'type':<14} {'messages':>8} {'rate_hz':>8}")
    for topic, type_name in sorted(ep.topics().items()):
        stamps = ep.read(topic)["stamp_ns"]
        span = (stamps[-1] - stamps[0]) / 1e9 if len(stamps) > 1 else 0.0
        rate = (len(stamps) - 1) / span if span > 0 else 0.0
        print(f"{topic:<16} {type_name:<14} {len(stamps):>8} {rate:>8.1f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    topics = ep.topics()
    cams = sorted(t for t in topics if t.startswith("camera/"))
    fig, axes = plt.subplots(2 if cams else 1, 1, figsize=(9, 5 if cams else 3.5), squeeze=False,
                             gridspec_kw={"height_ratios": [2, 1] if cams else [1]})
    if "joint_state" in topics:
        js = ep.read("joint_state")
        t = (js["stamp_ns"] - js["stamp_ns"][0]) / 1e9
        for i in range(js["position"].shape[1]):
            axes[0, 0].plot(t, js["position"][:, i], label=f"position[{i}]")
        axes[0, 0].set_xlabel("graph time (s)")
        axes[0, 0].legend(fontsize=7, ncol=4)
        axes[0, 0].set_title(f"joint_state of {Path(a.episode).resolve()}", fontsize=9)
    if cams:
        rgb = ep.read(cams[0])["rgb"]
        picks = np.linspace(0, len(rgb) - 1, min(8, len(rgb))).astype(int)
        axes[1, 0].imshow(np.concatenate([rgb[i] for i in picks], axis=1))
        axes[1, 0].set_axis_off()
        axes[1, 0].set_title(f"{cams[0]}: frames {picks.tolist()}", fontsize=9)
    out = Path(a.out or Path(a.episode).resolve().parent / "episode.png")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
