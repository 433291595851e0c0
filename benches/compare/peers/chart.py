"""Draws benches/compare/results/compare.png from compare.tsv: ops/s per client for every workload."""

import csv
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(tsv, png):
    rows = list(csv.DictReader(open(tsv), delimiter="\t"))
    clients = sorted({r["client"] for r in rows}, key=lambda c: (c != "etcd-blocking", c.startswith("floor"), c))
    panels = sorted({(int(r["members"]), r["workload"]) for r in rows})
    figure, axes = plt.subplots(
        len(panels), 1, figsize=(11, 2.6 * len(panels)), squeeze=False
    )
    for axis, (members, workload) in zip(axes[:, 0], panels):
        cells = sorted(
            {
                (int(r["callers"]), int(r["value_size"]))
                for r in rows
                if int(r["members"]) == members and r["workload"] == workload
            }
        )
        rate = defaultdict(float)
        for r in rows:
            if int(r["members"]) == members and r["workload"] == workload:
                rate[(r["client"], int(r["callers"]), int(r["value_size"]))] = float(
                    r["ops_per_sec"]
                )
        width = 0.8 / len(clients)
        for i, client in enumerate(clients):
            xs = [x + i * width for x in range(len(cells))]
            axis.bar(xs, [rate[(client, c, v)] for c, v in cells], width, label=client)
        axis.set_xticks([x + 0.4 - width / 2 for x in range(len(cells))])
        axis.set_xticklabels(["%d callers, %d B" % cell for cell in cells], fontsize=8)
        axis.set_ylabel("ops/s")
        axis.set_title("%s, %d member%s" % (workload, members, "" if members == 1 else "s"))
        axis.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    figure.savefig(png, dpi=90)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
