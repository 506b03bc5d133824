"""Subcommands of ``python -m generation``.

Every user error (bad argument, missing model, unknown task or prompt set) is one line
on stderr and exit status 2; never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from analysis.cli import UsageError


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block), so every bad call reads the same."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _numbers(text: str, kind: type) -> list:
    try:
        values = [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        what = "whole numbers" if kind is int else "numbers"
        raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def _floats(text: str) -> list[float]:
    return _numbers(text, float)


def _ints(text: str) -> list[int]:
    return _numbers(text, int)


def _floats_or_none(text: str) -> list[float]:
    """A comma-separated grid, or 'none' for an empty one (that method is not swept)."""
    return [] if text.strip().lower() == "none" else _floats(text)


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {value}")
    return value


def _patterns(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _prepare_embedded(args: argparse.Namespace) -> int:
    from generation.embedded import EmbeddedModelMissing, ensure_embedded_model

    try:
        path = ensure_embedded_model(args.cache_dir)
    except EmbeddedModelMissing as error:
        raise UsageError(str(error)) from error
    print(path)
    return 0


def _steer_weights(args: argparse.Namespace) -> int:
    from generation.pipeline import prepare_artifact
    from generation.types import ConditionSpec

    params: dict[str, Any] = {
        "rho": args.rho,
        "alpha": args.alpha,
        "prompt_set": args.prompt_set,
        "ranking": args.ranking,
        "module_patterns": list(args.modules),
        "layers": args.layers,
    }
    if args.prompt_file:
        params["prompt_file"] = str(args.prompt_file)
    spec = ConditionSpec(method="weight", model=args.model, params=params)
    artifact = prepare_artifact(
        spec,
        args.out,
        device=args.device,
        dtype=args.dtype,
        full_checkpoint=args.full_checkpoint,
        progress=not args.quiet,
    )
    assert artifact is not None  # noqa: S101 (narrows the type: a "weight" spec always yields an artifact)
    manifest = artifact.manifest
    kind = "full checkpoint" if args.full_checkpoint else "sparse edit"
    print(
        f"{artifact.path} ({kind}): edited {manifest['n_weights_edited']} of {manifest['n_weights_considered']} "
        f"weights ({manifest['share_edited']:.4%}), sha256 {artifact.sha256}"
    )
    return 0


def _steer_activations(args: argparse.Namespace) -> int:
    from generation.activation_steering import compute_steering_vectors
    from generation.loading import load_model

    if args.out.suffix != ".safetensors":
        raise UsageError(f"--out must name a .safetensors file, got {args.out}")
    loaded = load_model(args.model, device=args.device, dtype=args.dtype)
    vectors = compute_steering_vectors(
        loaded,
        prompt_set=args.prompt_set,
        layers=args.layers,
        prompt_file=str(args.prompt_file) if args.prompt_file else None,
        progress=not args.quiet,
    )
    digest = vectors.save(args.out)
    norms = ", ".join(f"layer {layer}: |v|={float(v.norm()):.3g}" for layer, v in sorted(vectors.vectors.items()))
    print(f"{args.out}: {norms}; sha256 {digest}")
    return 0


def _condition_from_args(args: argparse.Namespace) -> tuple[Any, Any]:
    from generation.pipeline import load_artifact
    from generation.types import ConditionSpec

    if args.condition_artifact is None:
        if args.coeff is not None:
            raise UsageError("--coeff needs --condition-artifact (a steering-vector .safetensors file)")
        if args.instruction:
            return ConditionSpec("prompt", args.model, {"instruction": args.instruction}), None
        return ConditionSpec("base", args.model), None
    if args.instruction:
        raise UsageError("--instruction (the prompt baseline) cannot be combined with --condition-artifact")
    artifact = load_artifact(args.condition_artifact)
    if str(artifact.path).endswith(".safetensors"):
        params = {} if args.coeff is None else {"coeff": args.coeff}
        return ConditionSpec("activation", args.model, params, artifact_path=artifact.path), artifact
    if args.coeff is not None:
        raise UsageError("--coeff applies to a steering-vector file, not to a steered checkpoint")
    return ConditionSpec("weight", args.model, dict(artifact.manifest.get("parameters", {})), artifact.path), artifact


def _family_from_args(args: argparse.Namespace) -> Any:
    from generation.task_families import get_task_family, load_task_families

    if args.tasks:
        families = load_task_families(args.tasks)
        if args.task not in families:
            raise UsageError(f"{args.tasks} has no task family {args.task!r}; it has: {', '.join(sorted(families))}")
        family = families[args.task]
    else:
        family = get_task_family(args.task)
    return family


def _sample(args: argparse.Namespace) -> int:
    from generation.pipeline import iter_samples
    from generation.types import DecodingSettings, SampleRequest

    family = _family_from_args(args)
    items = list(family.items)
    if args.items:
        items = [family.item(key) for key in _patterns(args.items)]
    spec, artifact = _condition_from_args(args)
    decoding = DecodingSettings(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        do_sample=not args.greedy,
    )
    requests = [SampleRequest(item.key, item.text, index, args.seed) for item in items for index in range(args.n)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    # Line-buffered JSONL: every finished batch is on disk even if the run is interrupted.
    with args.out.open("w", encoding="utf-8") as handle:
        for batch in iter_samples(
            spec,
            artifact,
            family,
            requests,
            decoding,
            batch_size=args.batch_size,
            progress=not args.quiet,
            device=args.device,
            dtype=args.dtype,
        ):
            for sample in batch:
                record = {"task": family.name, "model": args.model, **sample.as_dict()}
                parsed = family.parse(sample.text)
                if parsed is not None:
                    record["parsed"] = parsed
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                written += 1
            handle.flush()
    print(f"{args.out}: {written} samples")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from generation.sweep import SweepGrid, run_sweep, with_gains
    from generation.types import DecodingSettings

    if args.out.suffix not in (".jsonl", ".csv"):
        raise UsageError(f"--out must name a .jsonl or .csv file, got {args.out}")
    grid = SweepGrid(
        rhos=args.rho,
        alphas=args.alpha,
        prompt_sets=_patterns(args.prompt_set),
        layer_ranges=args.layers or ["all"],
        coeffs=args.coeff,
        activation_layers=args.activation_layers,
        activation_prompt_set=args.activation_prompt_set,
    )
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    rows = run_sweep(
        args.model,
        grid,
        out=args.out,
        ranking=args.ranking,
        module_patterns=args.modules,
        prompt_file=str(args.prompt_file) if args.prompt_file else None,
        n_dat=args.n_dat,
        n_aut=args.n_aut,
        seed=args.seed,
        decoding=DecodingSettings(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p),
        embedding=args.embedding,
        word_list=str(args.word_list) if args.word_list else None,
        batch_size=args.batch_size,
        n_boot=args.n_boot,
        device=args.device,
        dtype=args.dtype,
        progress=not args.quiet,
        on_row=_print_sweep_row,
    )
    rows = with_gains(rows, args.objective, n_boot=args.n_boot, seed=args.seed)
    _write_sweep_outputs(args, rows)
    return 0


def _print_sweep_row(row: dict[str, Any]) -> None:
    """One line per finished setting, so a long sweep shows its progress."""

    def value(metric: str, digits: int) -> str:
        number = row[metric]
        return "-" if number is None or number != number else f"{number:.{digits}f}"

    print(
        f"{row['setting']:<52} edited {row['share_edited']:.3%}  DAT valid {value('dat_valid_share', 2)}  "
        f"DAT {value('dat_score', 1)}  distinct {value('distinct_word_share', 2)}  "
        f"AUT orig {value('aut_originality', 3)}  perplexity {value('perplexity', 2)}  ({row['seconds']:.0f} s)",
        flush=True,
    )


def _write_sweep_outputs(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    """The best setting per method (printed and as a spec snippet), the table and the gain-vs-cost plot."""
    from generation.sweep import choose_settings, format_table, plot_gain_vs_cost, spec_snippet

    choices = choose_settings(rows, fluency_budget=args.fluency_budget)
    model_key = args.model_key or (args.model if args.model == "embedded" else Path(args.model).stem)
    command = "python -m generation sweep " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["sweep"] else [])
    snippet = spec_snippet(
        choices,
        model_key=model_key,
        objective=args.objective,
        fluency_budget=args.fluency_budget,
        command=command.strip(),
    )
    spec_out = args.spec_out or args.out.with_suffix(".spec.yaml")
    spec_out.write_text(snippet, encoding="utf-8")
    table_out = args.out.with_suffix(".table.md")
    table_out.write_text(format_table(rows) + "\n", encoding="utf-8")
    plot = args.plot or args.out.with_suffix(".png")
    plot_gain_vs_cost(rows, plot, objective=args.objective, fluency_budget=args.fluency_budget, title=str(args.model))
    for choice in choices:
        chosen = choice.row["setting"] if choice.row else "none"
        print(f"best {choice.method} within +{args.fluency_budget:.0%} perplexity: {chosen} ({choice.reason})")
    print(f"{args.out}: {len(rows)} settings; table {table_out}; plot {plot}; spec snippet {spec_out}")


def _graph_from_args(args: argparse.Namespace) -> Any:
    from generation.combinatorial.graphs import load_triples, synthetic_graph, wordnet_graph

    if args.graph == "synthetic":
        return synthetic_graph(
            n_concepts=args.concepts,
            n_labels=args.labels,
            mean_degree=args.mean_degree,
            n_communities=args.communities,
            seed=args.graph_seed,
        )
    if args.graph == "wordnet":
        return wordnet_graph(max_concepts=args.concepts)
    return load_triples(args.graph)


def _cc_scaling(args: argparse.Namespace) -> int:
    from generation.combinatorial.scaling import ScalingSpec, run_scaling

    if args.distance[0] < 1 or args.distance[1] < args.distance[0]:
        raise UsageError(f"--distance must be LO,HI with 1 <= LO <= HI, got {args.distance}")
    if min(args.include + args.exclude) < 0:
        raise UsageError("--include and --exclude are counts of labels: 0 or more")
    spec = ScalingSpec(
        depths=tuple(int(d) for d in args.depths),
        target_params=tuple(int(p) for p in args.params),
        budgets=tuple(args.budgets),
        temperatures=tuple(args.temperatures),
        n_prompts=args.prompts,
        distance=(int(args.distance[0]), int(args.distance[1])),
        include_levels=tuple(args.include),
        exclude_levels=tuple(args.exclude),
        max_hops=args.max_hops,
        walks_per_prompt=args.walks_per_prompt,
        n_samples=args.samples,
        top_p=args.top_p,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        seeds=args.seeds,
    )
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    graph = _graph_from_args(args)
    print(f"graph: {graph.n_concepts} concepts, {graph.n_edges} edges, {len(graph.labels)} labels", flush=True)

    def show(row: dict[str, Any]) -> None:
        print(
            f"budget {row['budget']:.2g}  L{row['depth']:<2} W{row['width']:<4} {row['params'] / 1e6:.2f}M  "
            f"seed {row['seed']}  I{row['include']} X{row['exclude']}  T={row['temperature']:g}  "
            f"loss {row['loss']:.3f}  valid {row['valid']:.2f}  U {row['utility']:.2f}  "
            f"N {row['novelty']:.2f}  C {row['creativity']:.2f} [{row['creativity_ci_low']:.2f}, "
            f"{row['creativity_ci_high']:.2f}]  ({row['train_seconds']:.0f} s)",
            flush=True,
        )

    table = run_scaling(graph, spec, args.out, device=args.device or "cpu", progress=not args.quiet, on_row=show)
    print(f"{args.out / 'scaling.csv'}: {len(table)} rows")
    return 0


def _add_model(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default="embedded", help="'embedded' (default), a HF model directory or a .gguf file"
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when present)")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16, float16 (default: by device)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_prompt_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt-set", default="dat", help="dat (default), openended, problem, ideation")
    parser.add_argument("--prompt-file", type=Path, default=None, help="YAML file of your own prompt sets")


def _add_weight_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ranking", choices=("matrix", "row"), default="matrix", help="top-rho per matrix or per row")
    parser.add_argument(
        "--modules",
        type=_patterns,
        default=("*",),
        help="comma-separated fnmatch patterns, e.g. 'mlp.*,self_attn.o_proj'",
    )
    parser.add_argument("--layers", default=None, help="decoder blocks, e.g. '15-29' or '4,8' (default: all)")


def build_parser() -> argparse.ArgumentParser:
    """The command line's subcommands and options, one declaration per subcommand."""
    parser = _Parser(prog="python -m generation", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in (
        _add_prepare_command, _add_steer_weights_command, _add_steer_activations_command, _add_sample_command,
        _add_sweep_command, _add_cc_scaling_command,
    ):  # fmt: skip
        add_command(commands)
    return parser


def _add_prepare_command(commands: argparse._SubParsersAction[_Parser]) -> None:
    """``prepare-embedded``: cache the embedded model."""
    prepare = commands.add_parser(
        "prepare-embedded", help="cache the embedded SmolLM2-135M-Instruct as safetensors (once)"
    )
    prepare.add_argument("--cache-dir", type=Path, default=None, help="default: $MODEL_CACHE_DIR or var/models")
    prepare.set_defaults(handler=_prepare_embedded)


def _add_steer_weights_command(commands: argparse._SubParsersAction[_Parser]) -> None:
    """``steer-weights``: the CreativityNeuro weight edit."""
    weights = commands.add_parser(
        "steer-weights", help="CreativityNeuro weight edit -> sparse edit (or a full checkpoint) directory"
    )
    _add_model(weights)
    _add_prompt_set(weights)
    weights.add_argument("--rho", type=_fraction, default=0.1, help="keep ratio (default 0.1)")
    weights.add_argument("--alpha", type=float, default=1.0, help="scale: W *= 1 + alpha on the mask (default 1.0)")
    _add_weight_options(weights)
    weights.add_argument("--out", type=Path, required=True, help="directory to write: the sparse edit by default")
    weights.add_argument(
        "--full-checkpoint",
        action="store_true",
        help="write a whole steered checkpoint (safetensors, config, tokenizer) instead of the sparse edit",
    )
    weights.set_defaults(handler=_steer_weights)


def _add_steer_activations_command(commands: argparse._SubParsersAction[_Parser]) -> None:
    """``steer-activations``: contrastive steering vectors."""
    activations = commands.add_parser("steer-activations", help="CAA steering vectors -> .safetensors + .json")
    _add_model(activations)
    _add_prompt_set(activations)
    activations.add_argument("--layers", default=None, help="decoder blocks, e.g. '10' or '8,12' (default: n/3)")
    activations.add_argument("--out", type=Path, required=True, help="the .safetensors file to write")
    activations.set_defaults(handler=_steer_activations)


def _add_sample_command(commands: argparse._SubParsersAction[_Parser]) -> None:
    """``sample``: responses to a task family."""
    sample = commands.add_parser("sample", help="generate responses to a task family, one JSON line each")
    _add_model(sample)
    sample.add_argument("--task", required=True, help="dat, aut, task_task, or a family from --tasks")
    sample.add_argument("--tasks", type=Path, default=None, help="YAML file of your own task families")
    sample.add_argument("--items", default=None, help="comma-separated item keys (default: all items)")
    sample.add_argument("--n", type=_positive_int, default=1, help="samples per item (default 1)")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument(
        "--condition-artifact", type=Path, default=None, help="steered checkpoint dir or steering-vector file"
    )
    sample.add_argument("--coeff", type=float, default=None, help="activation-steering coefficient")
    sample.add_argument("--instruction", default=None, help="prompt baseline: text appended to the task prompt")
    sample.add_argument("--max-new-tokens", type=_positive_int, default=128)
    sample.add_argument("--temperature", type=float, default=0.7)
    sample.add_argument("--top-p", type=float, default=0.95)
    sample.add_argument("--greedy", action="store_true", help="pick the most likely token (no sampling)")
    sample.add_argument("--batch-size", type=_positive_int, default=16)
    sample.add_argument("--out", type=Path, required=True, help="JSONL file to write")
    sample.set_defaults(handler=_sample)


def _add_sweep_command(commands: argparse._SubParsersAction[_Parser]) -> None:
    """``sweep``: weight and activation grids against the base model."""
    sweep = commands.add_parser(
        "sweep", help="weight and activation grids with the base model: creativity and fluency with bootstrap CIs"
    )
    _add_model(sweep)
    sweep.add_argument("--prompt-set", default="dat", help="weight grid: comma-separated prompt sets (default dat)")
    sweep.add_argument("--prompt-file", type=Path, default=None, help="YAML file of your own prompt sets")
    sweep.add_argument(
        "--rho", type=_floats_or_none, default=[0.05, 0.1], help="weight grid (default 0.05,0.1; 'none')"
    )
    sweep.add_argument("--alpha", type=_floats, default=[0.5, 1.0], help="weight grid (default 0.5,1)")
    sweep.add_argument(
        "--layers", action="append", default=None, help="weight grid: a layer range, repeatable ('all', '15-29')"
    )
    sweep.add_argument("--ranking", choices=("matrix", "row"), default="matrix", help="top-rho per matrix or per row")
    sweep.add_argument("--modules", type=_patterns, default=("*",), help="fnmatch patterns of the edited modules")
    sweep.add_argument(
        "--coeff", type=_floats_or_none, default=[2.0, 4.0], help="activation grid (default 2,4; 'none')"
    )
    sweep.add_argument(
        "--activation-layers", type=_ints, default=[10], help="activation grid: comma-separated blocks (default 10)"
    )
    sweep.add_argument("--activation-prompt-set", default="dat", help="prompt set of the steering vector (default dat)")
    sweep.add_argument("--n-dat", type=_non_negative_int, default=16, help="DAT answers per setting (default 16)")
    sweep.add_argument("--n-aut", type=_non_negative_int, default=16, help="AUT answers per setting (default 16)")
    sweep.add_argument("--seed", type=int, default=0)
    sweep.add_argument("--max-new-tokens", type=_positive_int, default=64)
    sweep.add_argument("--temperature", type=float, default=0.7)
    sweep.add_argument("--top-p", type=float, default=0.95)
    sweep.add_argument("--batch-size", type=_positive_int, default=16)
    sweep.add_argument(
        "--threads", type=_positive_int, default=None, help="CPU threads (1 is fastest on a CPU shared with others)"
    )
    sweep.add_argument("--n-boot", type=_positive_int, default=1000, help="bootstrap resamples per CI (default 1000)")
    sweep.add_argument("--embedding", default=None, help="word-vector file for the DAT (default: analysis' default)")
    sweep.add_argument("--word-list", type=Path, default=None, help="DAT dictionary (default /usr/share/dict/words)")
    sweep.add_argument(
        "--objective",
        choices=("aut_originality", "dat_score", "dat_valid_share", "distinct_word_share"),
        default="aut_originality",
        help="the creativity measure whose gain picks the best setting (default aut_originality)",
    )
    sweep.add_argument(
        "--fluency-budget", type=float, default=0.1, help="largest relative perplexity increase allowed (default 0.1)"
    )
    sweep.add_argument("--model-key", default=None, help="the model's key in the study spec (for the snippet)")
    sweep.add_argument(
        "--out", type=Path, required=True, help=".jsonl or .csv; rows appended as they finish, reused on rerun"
    )
    sweep.add_argument("--spec-out", type=Path, default=None, help="spec snippet (default OUT.spec.yaml)")
    sweep.add_argument("--plot", type=Path, default=None, help="gain vs fluency cost plot (default OUT.png)")
    sweep.set_defaults(handler=_sweep)


def _add_cc_scaling_command(commands: argparse._SubParsersAction[_Parser]) -> None:
    """``cc-scaling``: the combinatorial-creativity scaling grid."""
    cc = commands.add_parser(
        "cc-scaling", help="combinatorial creativity: train a depth x width grid at compute budgets, score walks"
    )
    cc.add_argument("--graph", default="synthetic", help="synthetic (default), wordnet, or a head,label,tail CSV/TSV")
    cc.add_argument("--concepts", type=_positive_int, default=300, help="synthetic: concepts; wordnet: keep this many")
    cc.add_argument("--labels", type=_positive_int, default=8, help="synthetic: label alphabet size")
    cc.add_argument("--mean-degree", type=float, default=3.0, help="synthetic: mean degree")
    cc.add_argument("--communities", type=_positive_int, default=5, help="synthetic: communities")
    cc.add_argument("--graph-seed", type=int, default=0)
    cc.add_argument("--depths", type=_floats, default=[1, 2, 3, 4, 6, 8], help="comma-separated layer counts")
    cc.add_argument("--params", type=_floats, default=[1e6], help="target parameters: model sizes (default 1e6)")
    cc.add_argument("--budgets", type=_floats, default=[3e12, 1e13], help="FLOPs budgets, 6 * params * tokens")
    cc.add_argument("--temperatures", type=_floats, default=[1.0, 0.7])
    cc.add_argument("--top-p", type=_fraction, default=1.0)
    cc.add_argument("--prompts", type=_positive_int, default=600, help="prompts per level (train + held out)")
    cc.add_argument("--distance", type=_floats, default=[3, 5], help="LO,HI graph distance of start and end")
    cc.add_argument("--include", type=_ints, default=[1], help="|I| levels, e.g. 0,1,2 (levels: every |I| x |X|)")
    cc.add_argument("--exclude", type=_ints, default=[1], help="|X| levels, e.g. 0,1")
    cc.add_argument("--max-hops", type=_positive_int, default=8, help="longest satisfying walk asked for")
    cc.add_argument("--walks-per-prompt", type=_positive_int, default=4, help="training walks per training prompt")
    cc.add_argument("--samples", type=_positive_int, default=4, help="walks sampled per held-out prompt")
    cc.add_argument("--batch-size", type=_positive_int, default=64)
    cc.add_argument("--lr", type=float, default=3e-3)
    cc.add_argument("--seed", type=int, default=0, help="task seed (prompts, split); training seeds start here")
    cc.add_argument("--seeds", type=_positive_int, default=1, help="training seeds per model (default 1)")
    cc.add_argument("--device", default=None, help="cpu (default) or cuda")
    cc.add_argument("--threads", type=int, default=0, help="CPU threads for torch (default: torch's choice)")
    cc.add_argument("--quiet", action="store_true", help="no progress bars")
    cc.add_argument("--out", type=Path, required=True, help="folder: scaling.csv, walks, prompts, checkpoints")
    cc.set_defaults(handler=_cc_scaling)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # bad arguments: one line on stderr, exit 2 (see _Parser)
    from generation.loading import ModelLoadError  # after parsing: --help stays fast, no torch

    try:
        return int(args.handler(args))
    except (UsageError, ModelLoadError, FileNotFoundError, ValueError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        print(f"{parser.prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
        return 2
