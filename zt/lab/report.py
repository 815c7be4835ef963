"""Writing a run's evidence: summary.json, report.md, report.html, junit.xml, history.jsonl.

The same verdicts in three forms: JSON and JUnit XML for CI, Markdown for a quick read, and
a self-contained HTML page (inline CSS and SVG, no network) with a timeline of every
operation, coloured by outcome, so a person sees when things happened and what failed.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from zt.lab.checkers import Verdict
from zt.lab.figures import Figures
from zt.lab.history import History

COLORS = {"ok": "#2e7d32", "fail": "#c62828", "unknown": "#f9a825"}
MARK = {"pass": "PASS", "fail": "FAIL", "unknown": "UNKNOWN"}


def _ts(t: float | None) -> str | None:
    return None if t is None else dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def summary(
    run_id: str,
    verdicts: list[Verdict],
    history: History,
    env: dict[str, Any],
    started: float,
    finished: float,
    logs: list[str],
    titles: dict[int, str] | None = None,
    figures: Figures | None = None,
) -> dict[str, Any]:
    milestones: dict[str, Any] = {}
    for v in verdicts:
        m = milestones.setdefault(
            str(v.criterion.milestone),
            {"title": (titles or {}).get(v.criterion.milestone), "criteria": [], "verdict": "pass"},
        )
        m["criteria"].append(v.to_json())
    for m in milestones.values():
        results = {c["verdict"] for c in m["criteria"]}
        m["verdict"] = "fail" if "fail" in results else ("unknown" if "unknown" in results else "pass")
    ops = history.operations()
    return {
        "run_id": run_id,
        "runtime": env.get("runtime"),
        "started": _ts(started),
        "finished": _ts(finished),
        "duration_s": round(finished - started, 1),
        "verdict": "pass" if verdicts and all(v.result == "pass" for v in verdicts) else "fail",
        "milestones": milestones,
        "operations": len(ops),
        "outcomes": {k: sum(o.outcome == k for o in ops) for k in ("ok", "fail", "unknown")},
        "environment": env,
        "logs": logs,
        "figures": figures.to_json() if figures is not None else {"values": {}, "tables": [], "plots": []},
    }


def markdown(doc: dict[str, Any]) -> str:
    lines = [
        f"# zt lab run {doc['run_id']}",
        "",
        f"- verdict: **{doc['verdict'].upper()}**",
        f"- runtime: {doc['runtime']}",
        f"- window: {doc['started']} to {doc['finished']} ({doc['duration_s']} s)",
        f"- operations recorded: {doc['operations']} ({doc['outcomes']})",
        f"- revision: {doc['environment']['git_revision']}{' (dirty)' if doc['environment']['git_dirty'] else ''}",
        "",
    ]
    for m, body in sorted(doc["milestones"].items()):
        title = f" ({body['title']})" if body.get("title") else ""
        lines += [
            f"## Milestone {m}{title}: {body['verdict'].upper()}",
            "",
            "| criterion | verdict | operations | ok | fail | unknown |",
            "|---|---|---|---|---|---|",
        ]
        for c in body["criteria"]:
            e = c["evidence"]
            lines.append(
                f"| {c['title']} (`{c['id']}`) | {MARK[c['verdict']]} | {e['operations']} | {e['ok']} | "
                f"{e['fail']} | {e['unknown']} |"
            )
        for c in body["criteria"]:
            for v in c["violations"]:
                lines.append(f"- `{c['id']}` violation: {v}")
            for e in c.get("errors", []):
                lines.append(f"- `{c['id']}` not judged: {e}")
        notes = sorted({c["note"] for c in body["criteria"] if c.get("note")})
        lines += [f"- {n}" for n in notes]
        lines.append("")
    lines += figures_markdown(doc.get("figures", {}))
    env = doc["environment"]
    lines += [
        "## Environment",
        "",
        f"- command: `{' '.join(env['command_line'])}`",
        f"- seed: {env['seed']}",
        f"- python {env['python']}, {env['openssl']}, {env['java']}",
        f"- packages: {', '.join(f'{k} {v}' for k, v in env['packages'].items())}",
        "",
        "Files: `summary.json`, `history.jsonl`, `junit.xml`, `report.html`, `logs/`.",
        "",
    ]
    return "\n".join(lines)


def _run_kind_note(figs: dict[str, Any]) -> str:
    if figs.get("labs_at_once", 1) > 1:
        return (
            f"Run kind: {figs.get('run_kind')}: these timings shared the machine with other labs of this run; "
            "compare only figures of runs made alone (zt-lab run without --parallel)."
        )
    return "Run kind: alone (one lab at a time): timings are comparable between such runs."


def figures_markdown(figs: dict[str, Any]) -> list[str]:
    """Measured figures (benchmarks, not verdicts) as Markdown: values, then tables."""
    if not figs or not (figs.get("values") or figs.get("tables")):
        return []
    lines = ["## Figures (measured, not pass/fail)", "", _run_kind_note(figs), ""]
    for m, values in figs.get("values", {}).items():
        for k, v in values.items():
            lines.append(f"- milestone {m}, `{k}`: {json.dumps(v)}")
    for t in figs.get("tables", []):
        lines += ["", f"### Milestone {t['milestone']}: {t['title']}", ""]
        lines.append("| " + " | ".join(t["columns"]) + " |")
        lines.append("|" + "---|" * len(t["columns"]))
        lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in t["rows"]]
    lines += [f"- plot: {p['title']} (`{p['file']}`)" for p in figs.get("plots", [])]
    return [*lines, ""]


def figures_html(figs: dict[str, Any]) -> str:
    """Tables, plots and values, in that order: a person reads the plots first."""
    if not figs or not any(figs.get(k) for k in ("values", "tables", "plots")):
        return ""
    parts = [
        "<h2>Figures (measured, not pass/fail: the machine may be shared)</h2>",
        f"<p><b>{html.escape(_run_kind_note(figs))}</b></p>",
    ]
    for p in figs.get("plots", []):
        parts.append(
            f"<h3>Milestone {p['milestone']}: {html.escape(p['title'])}</h3>"
            f'<img src="{html.escape(p["file"])}" alt="{html.escape(p["title"])}" style="max-width:100%">'
        )
    for t in figs.get("tables", []):
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in t["columns"])
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in t["rows"])
        parts.append(
            f"<h3>Milestone {t['milestone']}: {html.escape(t['title'])}</h3><table><tr>{head}</tr>{body}</table>"
        )
    values = figs.get("values", {})
    if values:
        parts.append(f"<h3>Values</h3><pre>{html.escape(json.dumps(values, indent=2))}</pre>")
    return "".join(parts)


def timeline_svg(history: History, width: int = 960) -> str:
    ops = history.operations()
    if not ops:
        return "<p>No operations were recorded.</p>"
    rows = sorted({o.criterion for o in ops})
    t0 = min(o.start for o in ops)
    t1 = max(o.end for o in ops)
    span = max(t1 - t0, 1e-3)
    left, row_h = 230, 22
    height = row_h * len(rows) + 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        f'font-size="12">'
    ]
    for i, r in enumerate(rows):
        y = 20 + i * row_h
        parts.append(f'<text x="4" y="{y + 14}">{html.escape(r)}</text>')
        parts.append(f'<line x1="{left}" y1="{y + row_h / 2}" x2="{width - 10}" y2="{y + row_h / 2}" stroke="#ddd"/>')
    for o in ops:
        y = 20 + rows.index(o.criterion) * row_h
        x = left + (o.start - t0) / span * (width - left - 20)
        w = max(3.0, (o.end - o.start) / span * (width - left - 20))
        title = html.escape(f"{o.actor} {o.op} {o.target}: {o.outcome}")
        parts.append(
            f'<rect x="{x:.1f}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" '
            f'fill="{COLORS[o.outcome]}"><title>{title}</title></rect>'
        )
    parts.append(
        f'<text x="{left}" y="{height - 6}">0 s</text><text x="{width - 60}" y="{height - 6}">{span:.1f} s</text></svg>'
    )
    return "".join(parts)


def html_page(doc: dict[str, Any], history: History) -> str:
    rows = []
    for m, body in sorted(doc["milestones"].items()):
        for c in body["criteria"]:
            e = c["evidence"]
            color = {"pass": COLORS["ok"], "fail": COLORS["fail"], "unknown": COLORS["unknown"]}[c["verdict"]]
            viol = "<br>".join(
                html.escape(v)
                for v in [*c["violations"], *c.get("errors", []), *([c["note"]] if c.get("note") else [])]
            )
            rows.append(
                f"<tr><td>{m}</td><td>{html.escape(c['title'])}<br><code>{c['id']}</code></td>"
                f"<td style='color:{color};font-weight:bold'>{MARK[c['verdict']]}</td>"
                f"<td>{e['operations']}</td><td>{e['ok']}</td><td>{e['fail']}</td><td>{e['unknown']}</td>"
                f"<td>{viol}</td></tr>"
            )
    env = html.escape(json.dumps(doc["environment"], indent=2))
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>zt lab run {doc["run_id"]}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top}}th{{background:#f4f4f4}}</style></head><body>
<h1>zt lab run {html.escape(doc["run_id"])}: {doc["verdict"].upper()}</h1>
<p>runtime <b>{html.escape(str(doc["runtime"]))}</b>, {doc["started"]} to {doc["finished"]}
({doc["duration_s"]} s), {doc["operations"]} operations {html.escape(str(doc["outcomes"]))}</p>
<table><tr><th>milestone</th><th>criterion</th><th>verdict</th><th>ops</th><th>ok</th><th>fail</th>
<th>unknown</th><th>violations</th></tr>{"".join(rows)}</table>
<h2>Timeline of operations</h2><p>Each bar is one operation; green ok, red fail (a refusal is a
fail outcome, and can be exactly what a criterion expects), yellow unknown. Hover for details.</p>
{timeline_svg(history)}
{figures_html(doc.get("figures", {}))}
<h2>Environment</h2><pre>{env}</pre></body></html>
"""


def junit(doc: dict[str, Any]) -> str:
    cases = []
    total = failures = 0
    for m, body in sorted(doc["milestones"].items()):
        for c in body["criteria"]:
            total += 1
            name = quoteattr(f"{c['id']}: {c['title']}")
            inner = ""
            if c["verdict"] != "pass":
                failures += 1
                why = [*c["violations"], *c.get("errors", [])]
                why = why or [c.get("note") or "no relevant operations were observed"]
                msg = f"{c['verdict']}: " + "; ".join(why)
                inner = f"<failure message={quoteattr(msg[:1000])}>{escape(json.dumps(c['evidence']))}</failure>"
            cases.append(f'<testcase classname="zt.lab.milestone{m}" name={name}>{inner}</testcase>')
    return (
        f'<?xml version="1.0" encoding="utf-8"?>\n<testsuite name="zt-lab" tests="{total}" '
        f'failures="{failures}">{"".join(cases)}</testsuite>\n'
    )


def write(report_dir: Path, doc: dict[str, Any], history: History) -> None:
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "summary.json").write_text(json.dumps(doc, indent=2) + "\n")
    (report_dir / "report.md").write_text(markdown(doc))
    (report_dir / "report.html").write_text(html_page(doc, history))
    (report_dir / "junit.xml").write_text(junit(doc))
    history.write_jsonl(report_dir / "history.jsonl")
    latest = report_dir.parent / "latest"
    tmp = report_dir.parent / ".latest.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(report_dir.name, tmp)
    os.replace(tmp, latest)


def verdict_table(doc: dict[str, Any]) -> str:
    lines = [f"{'criterion':<22} {'verdict':<8} {'ops':>5}  title"]
    for _, body in sorted(doc["milestones"].items()):
        for c in body["criteria"]:
            lines.append(f"{c['id']:<22} {MARK[c['verdict']]:<8} {c['evidence']['operations']:>5}  {c['title']}")
            lines += [f"{'':<22} {'':<8} {'':>5}  ! {e}" for e in c.get("errors", [])]
        lines += [
            f"  milestone {m}: {n}"
            for m, n in sorted({(c["milestone"], c["note"]) for c in body["criteria"] if c.get("note")})
        ]
    return "\n".join(lines)
