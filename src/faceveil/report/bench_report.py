"""report.md and report.html for `faceveil bench`, drawn from results.json's structure.

Both files are rendered from one list of blocks (heading, paragraph, table,
image) so they always say the same thing.
"""
from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np

from ..io.atomic import write_bytes_atomic
from . import plots

QUALITY_KEYS = ("l1", "mse", "psnr", "ssim", "fd_dlib")


def _f(v, d: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{d}f}" if isinstance(v, float) else str(v)


def _get(r: dict, *keys):
    for k in keys:
        if r is None:
            return None
        r = r.get(k)
    return r


def pearson(x, y) -> float | None:
    from scipy.stats import pearsonr

    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return None
    return float(pearsonr(x[ok], y[ok])[0])


def correlations(doc: dict) -> list[list[str]]:
    """Pearson r of each quality metric against each detection rate, over all variants and per family."""
    vs = doc["variants"]
    groups = {"all methods": vs}
    for r in vs:
        groups.setdefault(r["family"], []).append(r)
    groups = {k: g for k, g in groups.items() if len(g) >= 3}
    rows = []
    for name, g in groups.items():
        for det in ("pipeline_detector", "dlib-hog"):
            y = [_get(r, "detection", det, "rate") for r in g]
            y = [np.nan if v is None else v for v in y]
            cells = []
            for q in QUALITY_KEYS:
                x = [_get(r, "quality", q) for r in g]
                cells.append(_f(pearson([np.nan if v is None else v for v in x], y), 2))
            rows.append([name, str(len(g)), det] + cells)
    return rows


def write_report(doc: dict, out: Path) -> dict:
    out = Path(out)
    vs = doc["variants"]
    labels = [r["variant"]["label"] for r in vs]
    base = doc["baseline"]
    bo = base["attacks"]["original"]
    blocks: list[tuple] = [("h1", "faceveil bench")]
    cfg = doc["config"]
    blocks.append(("p", f"Photos: {cfg['images']} ({base['n_images']} photos, {base['n_pairs']} pairs, "
                        f"{base['n_gallery']} identities; chance rank-1 = {base['chance_rank1']:.3f}; "
                        f"{base['n_no_face']} photos without a detected face). Attacker: {cfg['attacker']}. "
                        f"Pipeline detector: {cfg['detector']} {cfg['detector_params'] or ''}. Seed {cfg['seed']}. "
                        "Timings are not reported: this machine is shared and noisy."))

    head = ["variant", "rank-1 naive", "EER naive", "TAR@1e-3 naive", "rank-1 parrot", "EER parrot",
            "FTA det", "FTA hog", "det rate", "hog rate", "fidelity AP", "SSIM", "PSNR", "FD-dlib", "diversity"]
    rows = [["original", _f(bo.get("rank1")), _f(bo.get("eer")), _f(bo.get("tar_at_far_0.001")),
             "", "", "", "", "", "", "", "", "", "", ""]]
    for r, lab in zip(vs, labels):
        a = r["privacy"]["attacks"]
        rows.append([lab, _f(a["naive"].get("rank1")), _f(a["naive"].get("eer")),
                     _f(a["naive"].get("tar_at_far_0.001")), _f(a["parrot"].get("rank1")), _f(a["parrot"].get("eer")),
                     _f(_get(r, "privacy", "fta", "pipeline_detector")), _f(_get(r, "privacy", "fta", "dlib-hog")),
                     _f(_get(r, "detection", "pipeline_detector", "rate")), _f(_get(r, "detection", "dlib-hog", "rate")),
                     _f(_get(r, "detection", "pipeline_detector", "fidelity_ap")),
                     _f(_get(r, "quality", "ssim")), _f(_get(r, "quality", "psnr"), 2), _f(_get(r, "quality", "fd_dlib")),
                     _f(_get(r, "diversity", "diversity"))])
    blocks += [("h2", "Summary"), ("table", head, rows),
               ("p", "rank-1: closed-set identification (one gallery photo per person); EER and TAR at FAR 1e-3 from "
                     "the verification pairs (TAR '-' when too few impostor pairs). naive: originals vs anonymized; "
                     "parrot: anonymized vs anonymized. FTA: share of anonymized faces no detector finds (pipeline "
                     "detector / dlib HOG). det/hog rate: share of the faces each detector found on the original "
                     "that it still finds (IoU >= 0.5). Fidelity AP: the pipeline detector's AP on the anonymized "
                     "images against its own detections on the originals. SSIM/PSNR per face crop; FD-dlib: Fréchet "
                     "distance of dlib descriptors (not FID). Diversity: mean pairwise descriptor distance over seeds.")]
    summary = _md_table(head, rows)

    att = ["h2", "Privacy attacks in detail"]
    arows = []
    for r, lab in zip(vs, labels):
        for name, a in r["privacy"]["attacks"].items():
            arows.append([lab, name, _f(a.get("eer")), _f(a.get("fmr_at_threshold")), _f(a.get("fnmr_at_threshold")),
                          _f(a.get("tar_at_far_0.001")), _f(a.get("rank1")), _f(a.get("genuine_mean")),
                          _f(a.get("impostor_mean"))])
    blocks += [tuple(att), ("table", ["variant", "attack", "EER", "FMR@0.6", "FNMR@0.6", "TAR@1e-3", "rank-1",
                                      "genuine mean", "impostor mean"], arows)]

    for attack in ("naive", "reverse", "parrot"):
        curves = [("original", bo["det"]["fmr"], bo["det"]["fnmr"])] if "det" in bo else []
        curves += [(lab, r["privacy"]["attacks"][attack]["det"]["fmr"], r["privacy"]["attacks"][attack]["det"]["fnmr"])
                   for r, lab in zip(vs, labels) if "det" in r["privacy"]["attacks"][attack]]
        p = plots.det_plot(curves, out / f"det_{attack}.png", f"DET, {attack} attack")
        blocks.append(("img", p.name, f"DET curves, {attack} attack"))

    blocks.append(("h2", "Detection utility by face height"))
    for det, title in (("pipeline_detector", f"faces still found by {cfg['detector']}"),
                       ("dlib-hog", "faces still found by dlib HOG")):
        rates = {lab: _get(r, "detection", det, "by_size") or {} for r, lab in zip(vs, labels)}
        if rates:
            p = plots.rate_by_size_plot(rates, out / f"rate_{det}.png", title)
            blocks.append(("img", p.name, title))
    drow = []
    for r, lab in zip(vs, labels):
        for det in ("pipeline_detector", "dlib-hog"):
            d = r["detection"][det]
            drow.append([lab, det, str(d["n_faces"]), _f(d["rate"]), _f(d["fidelity_ap"]),
                         _f(_get(d, "vs_labels", "rate"))] + [_f(v, 2) for v in d["by_size"].values()])
    any_d = vs[0]["detection"]["pipeline_detector"] if vs else {"by_size": {}}
    blocks.append(("table", ["variant", "detector", "faces", "rate", "fidelity AP", "rate vs labels"] +
                   [f"{b} px" for b in any_d["by_size"]], drow))

    blocks.append(("h2", "Privacy against utility"))
    x = [_get(r, "privacy", "attacks", "naive", "rank1") for r in vs]
    x = [np.nan if v is None else v for v in x]
    for det, name in (("pipeline_detector", cfg["detector"]), ("dlib-hog", "dlib HOG")):
        y = [_get(r, "detection", det, "rate") for r in vs]
        y = [np.nan if v is None else v for v in y]
        p = plots.privacy_utility_plot(labels, x, y, out / f"pareto_{det}.png", "rank-1 identification (naive attack)",
                                       f"detection rate ({name})")
        front = plots.pareto_front(np.array(x, float), np.array(y, float))
        blocks += [("img", p.name, f"privacy-utility, {name}"),
                   ("p", f"Pareto front ({name}): " + ", ".join(labels[i] for i in front))]

    blocks.append(("h2", "Quality metrics against detection rate (Pearson r)"))
    crow = correlations(doc)
    if crow:
        blocks.append(("table", ["group", "variants", "detection rate of"] + list(QUALITY_KEYS), crow))
    else:
        blocks.append(("p", "Fewer than three variants: no correlation computed."))
    qrow = [[lab] + [_f(_get(r, "quality", k), 3) for k in QUALITY_KEYS] + [str(_get(r, "quality", "n_crops"))]
            for r, lab in zip(vs, labels)]
    blocks.append(("table", ["variant"] + list(QUALITY_KEYS) + ["crops"], qrow))

    write_bytes_atomic(out / "report.md", _markdown(blocks).encode())
    write_bytes_atomic(out / "report.html", _html(blocks).encode())
    return {"summary": summary}


def _md_table(head, rows) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _markdown(blocks) -> str:
    parts = []
    for b in blocks:
        kind = b[0]
        if kind == "h1":
            parts.append(f"# {b[1]}")
        elif kind == "h2":
            parts.append(f"## {b[1]}")
        elif kind == "p":
            parts.append(b[1])
        elif kind == "table":
            parts.append(_md_table(b[1], b[2]))
        elif kind == "img":
            parts.append(f"![{b[2]}]({b[1]})")
    return "\n\n".join(parts) + "\n"


def _html(blocks) -> str:
    e = html.escape
    body = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2"):
            body.append(f"<{kind}>{e(b[1])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{e(b[1])}</p>")
        elif kind == "table":
            head = "".join(f"<th>{e(h)}</th>" for h in b[1])
            rows = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in b[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "img":
            body.append(f'<figure><img src="{e(b[1])}" alt="{e(b[2])}"><figcaption>{e(b[2])}</figcaption></figure>')
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px;"
             "text-align:right}td:first-child,th:first-child{text-align:left}img{max-width:100%}"
             "figure{display:inline-block;margin:0.5em}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>faceveil bench</title><style>{style}</style>"
            f"</head><body>{''.join(body)}</body></html>\n")
