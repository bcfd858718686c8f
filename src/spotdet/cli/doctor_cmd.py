"""``spotdet doctor [--json] [--clear-probes]``: this machine, and what spotdet will do on it."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from spotdet.cli.main import app, handle_errors, out


@app.command()
@handle_errors
def doctor(
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    clear_probes: bool = typer.Option(False, "--clear-probes",
                                      help="Forget the cached backend measurements (they are re-measured on the "
                                           "next load)."),
) -> None:
    """What this machine is (CPU, instruction sets, GPUs, runtimes) and what spotdet will do on it, and why."""
    from spotdet.backends import probe
    from spotdet.doctor import report

    if clear_probes:
        removed = probe.clear_cache()
        out.print(f"cleared {removed} cached backend measurement(s) ({probe.cache_path()})")
        return
    data = report()
    if as_json:
        print(json.dumps(data, indent=2))
        return
    _print(data)


def _print(data: dict) -> None:
    m = data["machine"]
    table = Table(show_header=False, title="this machine", title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("CPU", f"{m['cpu']} ({m['logical_cpus']} logical CPUs)")
    table.add_row("instruction sets", f"{m['isa']}: " + ", ".join(
        f"{flag} {'yes' if has else 'no'}" for flag, has in m["features"].items())
        + (" [yellow](SPOTDET_CPU_FEATURES override)[/]" if m["features_overridden"] else ""))
    table.add_row("GPUs", m["gpus"] or "none (no NVIDIA driver or NVML)")
    table.add_row("fingerprint", m["fingerprint"])
    r = data["runtimes"]
    table.add_row("onnxruntime", f"{r['onnxruntime']['version']}: {', '.join(r['onnxruntime']['providers'])}")
    ov = r["openvino"]
    table.add_row("openvino", f"{ov['version']}: {ov['cpu']} ({', '.join(ov['capabilities'])})" if ov
                  else "not installed (pip install 'spotdet[openvino]')")
    table.add_row("tensorrt", r["tensorrt"] or "not loadable (no libnvinfer)")
    for dist in ("torch", "ray"):
        table.add_row(dist, r[dist] or "not installed")
    out.print(table)
    choices = Table(title="what spotdet does here", title_justify="left")
    choices.add_column("asked for", style="bold")
    choices.add_column("runs as, and why")
    for asked, answer in data["choices"].items():
        choices.add_row(asked, answer)
    out.print(choices)
    if not data["probes"]:
        out.print("backend probes: none cached yet (the first auto load of an fp32 model on the CPU measures)")
        return
    probes = Table(title="cached backend probes (ms per image, median, side by side)", title_justify="left")
    for col in ("model", "threads", "onnxruntime", "openvino", "chosen", "measured on"):
        probes.add_column(col)
    for p in data["probes"]:
        probes.add_row(p["model"], str(p["threads"] or "all"), _ms(p["ms"].get("onnxruntime")),
                       _ms(p["ms"].get("openvino")), p["chosen"],
                       "this machine" if p["this_machine"] else f"other: {p['machine']}")
    out.print(probes)


def _ms(value) -> str:
    return "-" if value is None else f"{value:.2f}"
