"""`llm-tui eval MODEL DATA`: multiple-choice accuracy (MMLU, C-Eval, a CSV or a JSONL file) with 95 % intervals,
saved in the store (and MLflow when installed), exported or compared with a saved run."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from engines.errors import BadRequest, LlmTuiError

if TYPE_CHECKING:
    from engines.config.load import Config
    from engines.evaluate.types import EvalOptions, EvalProgress, EvalReport, EvalSet
    from engines.types import ModelSpec

SHOWN_PROBLEMS = 20
BAR = 20


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Callable[..., object]) -> None:
    ev = sub.add_parser("eval", help="measure multiple-choice accuracy (MMLU, C-Eval, CSV, JSONL) with 95 % CIs")
    common(ev)
    ev.add_argument("model", metavar="MODEL", help="catalog id, alias, path to a model, ollama:NAME or --endpoint's")
    ev.add_argument("data", metavar="DATA", help="an MMLU or C-Eval folder (dev/ val/ test/), a .csv or a .jsonl")
    ev.add_argument("--shots", type=int, default=5, metavar="K", help="answered dev questions before each (5)")
    ev.add_argument("--limit", type=int, metavar="N", help="at most N test items per subject")
    ev.add_argument("--subject", action="append", default=[], metavar="S", help="only this subject (repeatable)")
    ev.add_argument("--method", choices=("loglik", "generate"), help="default: loglik where the engine can score")
    ev.add_argument("--json", action="store_true", help="JSON lines on stdout: progress, then the report")
    ev.add_argument("--export", metavar="PATH", help="write the report to PATH (.md, .json or .csv)")
    ev.add_argument("--compare", type=int, metavar="RUN_ID", help="McNemar's test against a saved run")
    ev.add_argument("--no-save", action="store_true", help="do not save the run in the store")
    ev.add_argument("--engine", help="engine to run the model on (default: the first installed that loads it)")
    ev.add_argument("--endpoint", metavar="URL", help="an OpenAI-compatible server; MODEL is its model name")
    ev.add_argument("--api-key-env", metavar="NAME", default="OPENAI_API_KEY", help="variable holding its key")
    ev.add_argument("--n-ctx", type=int, metavar="N", help="context size in tokens")
    ev.add_argument("--threads", type=int, metavar="N", help="CPU threads for inference")
    ev.add_argument("--n-gpu-layers", type=int, metavar="N", help="layers to offload to the GPU (-1 = all)")


def run_eval(args: argparse.Namespace, config: Config) -> int:
    """Run `llm-tui eval`; returns the exit status (2 for unusable data, 130 when interrupted)."""
    from engines.evaluate.data import load_eval_set
    from engines.evaluate.export import FORMATS
    from engines.evaluate.types import EvalOptions, Method

    if args.export and Path(args.export).suffix.lower() not in FORMATS:
        raise BadRequest(f"--export {args.export}: give a path ending in {', '.join(FORMATS)}")
    try:
        data = load_eval_set(Path(args.data))
    except BadRequest as exc:
        print(f"llm-tui: error: {exc}", file=sys.stderr)
        return 2
    print_problems(data, sys.stderr)
    options = EvalOptions(
        shots=args.shots,
        limit=args.limit,
        method=Method(args.method) if args.method else None,
        subjects=tuple(args.subject),
    )
    from engines.evaluate.runner import select_items

    select_items(data, options)  # an unknown subject or a bad limit is refused before the model loads
    baseline = _saved(config, args.compare) if args.compare is not None else None
    report, interrupted = _evaluate(args, config, data, options)
    return _finish(args, config, report, baseline, interrupted)


def print_problems(data: EvalSet, out: TextIO) -> None:
    """The first problems of the data with their lines, and how many there are."""
    if not data.problems:
        return
    print(f"llm-tui: {len(data.problems)} row(s) of {data.name} refused:", file=out)
    for problem in data.problems[:SHOWN_PROBLEMS]:
        print(f"  {problem.source}: {problem.message}", file=out)
    if len(data.problems) > SHOWN_PROBLEMS:
        print(f"  ... and {len(data.problems) - SHOWN_PROBLEMS} more", file=out)


def _saved(config: Config, run_id: int) -> EvalReport:
    from engines.store.sessions import Store

    with Store(config.db_path) as store:
        return store.evals.get(run_id)


def _evaluate(args: argparse.Namespace, config: Config, data: EvalSet, options: EvalOptions) -> tuple[EvalReport, bool]:
    """Launch the model as `llm-tui chat` does and run the evaluation on a thread; Ctrl-C cancels it (the items
    done are kept). Returns the report and whether it was interrupted."""
    from cli.chat import package_progress
    from engines.evaluate.runner import run_eval as run
    from engines.launch import default_options, launch
    from engines.manager import EngineManager

    ref: str | ModelSpec = args.model
    if args.endpoint:
        from engines.catalog.resolve_remote import endpoint_spec

        ref = endpoint_spec(args.endpoint, args.model, os.environ, args.api_key_env)
    show = _progress_printer(args.json)
    cancel = threading.Event()
    outcome: dict[str, Any] = {}
    with EngineManager() as manager:
        launched = launch(
            manager,
            ref,
            config,
            engine=args.engine,
            options=default_options(config),
            progress=package_progress(f"preparing {args.model}"),
        )

        def work() -> None:
            try:
                outcome["report"] = run(manager, launched.run_id, data, options, progress=show, cancel=cancel)
            except BaseException as exc:  # handed to the main thread, which raises it
                outcome["error"] = exc

        thread = threading.Thread(target=work, name="llm-tui-eval", daemon=True)
        thread.start()
        interrupted = False
        try:
            thread.join()
        except KeyboardInterrupt:
            interrupted = True
            cancel.set()
            thread.join()
    if show is not None:
        show.end()
    if "error" in outcome:
        raise outcome["error"]
    report: EvalReport = outcome["report"]
    return report, interrupted


class _Progress:
    """A redrawn bar on a terminal's stderr, or JSON lines on stdout."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.drawn = False

    def __call__(self, p: EvalProgress) -> None:
        if self.as_json:
            line = {"event": "progress", "done": p.done, "total": p.total, "correct": p.correct}
            line |= {"items_per_s": round(p.items_per_s, 3), "subject": p.subject}
            print(json.dumps(line), flush=True)
            return
        fraction = p.done / p.total if p.total else 1.0
        filled = int(fraction * BAR)
        accuracy = f"{100 * p.correct / p.done:.1f} %" if p.done else "-"
        text = (
            f"eval: [{'#' * filled}{'.' * (BAR - filled)}] {p.done}/{p.total}  accuracy {accuracy}"
            f"  {p.items_per_s:.2f} items/s  {p.subject}"
        )
        width = shutil.get_terminal_size((100, 24)).columns - 1
        sys.stderr.write("\r" + text[:width].ljust(width))
        sys.stderr.flush()
        self.drawn = True

    def end(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _progress_printer(as_json: bool) -> _Progress | None:
    if as_json or sys.stderr.isatty():
        return _Progress(as_json)
    return None


def _finish(
    args: argparse.Namespace, config: Config, report: EvalReport, baseline: EvalReport | None, interrupted: bool
) -> int:
    from engines.evaluate.export import compare_markdown, report_to_dict, write_export
    from engines.evaluate.mlflow_log import log_eval
    from engines.evaluate.stats import mcnemar

    if not args.no_save:
        from engines.store.sessions import Store

        with Store(config.db_path) as store:
            report = store.evals.save(report)
    mlflow_run: str | None = None
    try:
        mlflow_run = log_eval(report, config)
    except LlmTuiError as exc:
        print(f"llm-tui: warning: {exc}", file=sys.stderr)
    if args.export:
        print(f"llm-tui: report written to {write_export(report, Path(args.export))}", file=sys.stderr)
    test = mcnemar(baseline, report) if baseline is not None else None
    if args.json:
        line = {"event": "report", **report_to_dict(report, items=False), "mlflow_run_id": mlflow_run}
        if baseline is not None and test is not None:
            line["compare"] = {"run": baseline.id, **{k: getattr(test, k) for k in test.__dataclass_fields__}}
        print(json.dumps(line), flush=True)
    else:
        print(summary(report))
        if mlflow_run is not None:
            print(f"MLflow run {mlflow_run}")
        if baseline is not None and test is not None:
            print()
            print(compare_markdown(baseline, report, test))
    if interrupted or report.state == "cancelled":
        return 130
    if report.state == "failed":
        print(f"llm-tui: error: the evaluation failed: {report.error}", file=sys.stderr)
        return 1
    return 0


def summary(report: EvalReport) -> str:
    """The per-subject table with 95 % intervals, the overall line, the speed, method and saved id."""
    rows = [*report.subjects, report.overall]
    width = max(12, *(len(s.subject) for s in rows))
    lines = [f"{'subject':<{width}}  {'items':>6}  {'correct':>7}  {'accuracy':>8}  95 % CI"]
    for s in rows:
        lines.append(
            f"{s.subject:<{width}}  {s.items:>6}  {s.correct:>7}  {100 * s.accuracy:>7.1f}%"
            f"  {100 * s.ci_low:.1f}-{100 * s.ci_high:.1f} %"
        )
    lines.append(
        f"{report.model} ({report.engine}), {report.method.value}, {report.shots} shot(s):"
        f" {len(report.items)} items in {report.elapsed_s:.1f} s, {report.items_per_s:.2f} items/s"
    )
    lines += [f"note: {note}" for note in report.notes]
    if report.state != "finished":
        lines.append(f"state: {report.state}" + (f" ({report.error})" if report.error else ""))
    if report.id is not None:
        lines.append(f"saved as run {report.id}")
    return "\n".join(lines)
