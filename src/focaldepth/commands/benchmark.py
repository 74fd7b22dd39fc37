"""`focaldepth benchmark`: speed and memory, each beside the fixed reference workload.

    focaldepth benchmark render [--out PATH] [--repeats N] [--threads N] [--quick]
    focaldepth benchmark all    [--out PATH] [--repeats N] [--threads N] [--quick]

``all`` runs every benchmark listed in :data:`BENCHMARKS` below (render, generate, predict;
add yours there). Results
print as a table and, with ``--out``, are written as JSON (atomically). Figures to quote
across machines are the ratios to the reference workload timed in the same run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer


def _run_render(repeats: int, quick: bool) -> dict[str, Any]:
    from focaldepth.bench import render

    if quick:  # a smoke run: small images, one timed call, one reference run
        return render.run(sizes_hw=((64, 64),), repeats=1, warmup=1, reference_runs=1,
                          reference_warmup=0, max_coc_px=12.0)
    return render.run(repeats=repeats)


def _render_rows(result: dict[str, Any]) -> list[dict[str, str]]:
    from focaldepth.bench import render

    return render.table_rows(result)


def _run_generate(repeats: int, quick: bool) -> dict[str, Any]:
    from focaldepth.bench import generate

    if quick:
        return generate.run(static_sequences=1, dynamic_sequences=1, end_to_end_sequences=2,
                            workers=(1,), warmup=0, reference_runs=1)
    return generate.run()


def _generate_rows(result: dict[str, Any]) -> list[dict[str, str]]:
    from focaldepth.bench import generate

    return generate.table_rows(result)


def _run_predict(repeats: int, quick: bool) -> dict[str, Any]:
    from focaldepth.bench import predict

    if quick:
        return predict.run(sizes_hw=((64, 64),), num_frames=10, reference_runs=1,
                           command_cases=((64, 64, 5, 10, {}),), stack_cases=((64, 64, 6),))
    return predict.run()


def _predict_rows(result: dict[str, Any]) -> list[dict[str, str]]:
    from focaldepth.bench import predict

    return predict.table_rows(result)


# Every benchmark `focaldepth benchmark all` runs: name -> (run(repeats, quick), table rows).
# ``repeats`` is used by the benchmarks that take it (render); the others set their own.
BENCHMARKS: dict[str, tuple[Callable[[int, bool], dict[str, Any]],
                            Callable[[dict[str, Any]], list[dict[str, str]]]]] = {
    "render": (_run_render, _render_rows),
    "generate": (_run_generate, _generate_rows),
    "predict": (_run_predict, _predict_rows),
}


def print_table(title: str, rows: list[dict[str, str]], reference: dict[str, Any] | None) -> None:
    """A rich table of ``rows`` (all rows share the keys of the first) and the reference time."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in rows[0] if rows else []:
        table.add_column(column, justify="left" if column == "case" else "right",
                         no_wrap=column == "case")
    for row in rows:
        table.add_row(*row.values())
    console = Console()
    if not console.is_terminal:  # a log file or pipe: do not squeeze the table to 80 columns
        console = Console(width=160)
    console.print(table)
    if reference is not None:
        best = f", best {reference['best_s']:.3f} s" if "best_s" in reference else ""
        console.print(f"reference workload {reference['workload']}: median {reference['seconds']:.3f} s"
                      f"{best} ({reference['torch_threads']} torch threads)")


def _set_threads(threads: int | None) -> None:
    import torch

    if threads is not None:
        torch.set_num_threads(threads)


def _write(out: Path | None, result: dict[str, Any]) -> None:
    if out is not None:
        from focaldepth.io.atomic import atomic_write_json

        atomic_write_json(out, result)
        print(f"wrote {out}")


def run_benchmarks(names: list[str], repeats: int, quick: bool) -> dict[str, Any]:
    """Run the named benchmarks; print a table for each; return ``{name: result}``.

    A benchmark that cannot run on this install (a :class:`UserError`, e.g. a model file
    that is not there) is recorded as ``{"error": message}`` and the others still run.
    """
    from focaldepth.errors import UserError

    results = {}
    for name in names:
        run, rows = BENCHMARKS[name]
        try:
            result = run(repeats, quick)
        except UserError as error:
            print(f"focaldepth benchmark {name}: not run: {error}", file=sys.stderr)
            results[name] = {"benchmark": name, "error": str(error)}
            continue
        print_table(f"focaldepth benchmark {name}", rows(result), result.get("reference"))
        results[name] = result
    return results


def _exit_if_failed(results: dict[str, Any]) -> None:
    failed = [name for name, result in results.items() if "error" in result]
    if failed:
        print(f"focaldepth benchmark: not run: {', '.join(failed)}", file=sys.stderr)
        raise typer.Exit(1)


Out = Annotated[Path | None, typer.Option("--out", help="Write the results as JSON to this path.")]
Repeats = Annotated[int, typer.Option("--repeats", min=1, help="Timed runs per case (median quoted).")]
Threads = Annotated[int | None, typer.Option("--threads", min=1,
                                             help="torch CPU threads (default: torch's).")]
Quick = Annotated[bool, typer.Option("--quick", help="Tiny smoke run (figures not meaningful).")]


def _single_benchmark_command(name: str) -> Callable[..., None]:
    """The sub-command running one entry of :data:`BENCHMARKS`."""

    def command(out: Out = None, repeats: Repeats = 3, threads: Threads = None,
                quick: Quick = False) -> None:
        _set_threads(threads)
        results = run_benchmarks([name], repeats, quick)
        _write(out, results[name])
        _exit_if_failed(results)

    return command


def register(app: typer.Typer) -> None:
    """Add ``focaldepth benchmark`` (one sub-command per benchmark, and ``all``) to the app."""
    bench_app = typer.Typer(help="Speed and memory benchmarks, each beside a fixed reference "
                                 "workload timed in the same run (compare ratios across machines).",
                            no_args_is_help=True)

    for name, summary in (
        ("render", "Renderer frames/s (frame = one focus slice): 256x256 and 640x360, 24 layers, "
                   "5 focus, disk, CoC <= 40 px; forward+backward at 256x256."),
        ("generate", "Procedural generator: sequences/s and frames/s at 256x256, peak memory."),
        ("predict", "Streaming predict with the shipped default model: per-frame latency, frames/s "
                    "and memory at 256x256, 640x360 and 1280x720; the whole predict command end to "
                    "end (decode, predict, write, video) at 640x360 and 1080p, 5- and 32-frame windows."),
    ):
        bench_app.command(name, help=summary)(_single_benchmark_command(name))

    @bench_app.command("all")
    def all_command(out: Out = None, repeats: Repeats = 3, threads: Threads = None,
                    quick: Quick = False) -> None:
        """Every benchmark listed in focaldepth.commands.benchmark.BENCHMARKS (one that cannot run here is reported, the rest still run; exit status 1)."""
        _set_threads(threads)
        results = run_benchmarks(list(BENCHMARKS), repeats, quick)
        _write(out, {"benchmarks": results})
        _exit_if_failed(results)

    app.add_typer(bench_app, name="benchmark")
