#!/usr/bin/env python3
"""A line chart as SVG from a JSON file {"title", "x_label", "y_label", "series": [{"name",
"points": [[x, y], ...]}]} (the shape of redrafter-train's plot::line_chart), for measurements
taken by hand from several bench runs. Usage: plot_lines.py IN.json OUT.svg"""
import json
import sys

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]


def main(src, dst):
    d = json.load(open(src))
    W, H, L, R, T, B = 720, 420, 70, 190, 40, 50
    pts = [p for s in d["series"] for p in s["points"]]
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y1 = max(p[1] for p in pts) * 1.08
    sx = lambda x: L + (x - x0) / ((x1 - x0) or 1) * (W - L - R)
    sy = lambda y: H - B - y / y1 * (H - T - B)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="14">{d["title"]}</text>',
           f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>',
           f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>',
           f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">{d["x_label"]}</text>',
           f'<text x="16" y="{(T + H - B) / 2}" transform="rotate(-90 16 {(T + H - B) / 2})" text-anchor="middle">{d["y_label"]}</text>']
    for i in range(6):
        y = y1 * i / 5
        out.append(f'<line x1="{L - 4}" y1="{sy(y):.1f}" x2="{W - R}" y2="{sy(y):.1f}" stroke="#ddd"/>')
        label = f"{y:.0f}" if y1 >= 10 else f"{y:.2f}"
        out.append(f'<text x="{L - 8}" y="{sy(y) + 4:.1f}" text-anchor="end">{label}</text>')
    for x in sorted({p[0] for p in pts}):
        out.append(f'<text x="{sx(x):.1f}" y="{H - B + 16}" text-anchor="middle">{x:g}</text>')
    for k, s in enumerate(d["series"]):
        c = COLORS[k % len(COLORS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s["points"])
        out.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="2"/>')
        out += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{c}"/>' for x, y in s["points"]]
        out.append(f'<line x1="{W - R + 12}" y1="{T + 18 * k + 6}" x2="{W - R + 32}" y2="{T + 18 * k + 6}" stroke="{c}" stroke-width="2"/>')
        out.append(f'<text x="{W - R + 38}" y="{T + 18 * k + 10}">{s["name"]}</text>')
    out.append("</svg>")
    open(dst, "w").write("\n".join(out) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
