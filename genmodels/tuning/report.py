"""What a study leaves behind: trials.csv, the best config ready to train, PNG plots and summary.md."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import optuna
import optuna.visualization.matplotlib as ovm
import yaml

from genmodels.files import atomic_write, write_json, write_text
from genmodels.tuning.config import TuneConfig, with_params


def _save_plot(make, path: Path) -> str | None:
    """Draw one Optuna plot to PNG; a plot the study cannot support yet (e.g. importances with one
    finished trial) is skipped with the reason instead of failing the report."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental; tight_layout may demur
        try:
            result = make()
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            return f"{path.name}: skipped ({exc})"
        ax = result.flatten()[0] if hasattr(result, "flatten") else result
        fig = ax.figure
        fig.set_size_inches(max(fig.get_size_inches()[0], 7), max(fig.get_size_inches()[1], 4.5))
        fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return None


def write_report(study: optuna.Study, tune: TuneConfig, base: dict[str, Any],
                 retrained: dict[str, Any] | None = None) -> dict[str, Any]:
    out = tune.study_dir()
    out.mkdir(parents=True, exist_ok=True)
    df = study.trials_dataframe()
    atomic_write(out / "trials.csv", lambda tmp: df.to_csv(tmp, index=False))
    states = {s.name.lower(): 0 for s in optuna.trial.TrialState}
    for t in study.trials:
        states[t.state.name.lower()] += 1
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    single = len(tune.objectives) == 1
    summary: dict[str, Any] = {"study": tune.study_name, "trials": len(study.trials), "states": states,
                               "objectives": tune.objectives, "directions": tune.directions}
    notes: list[str | None] = []
    best_trials = []
    if complete:
        best_trials = [study.best_trial] if single else study.best_trials
        for t in best_trials:
            cfg_name = "best_config.yaml" if single else f"best_config_trial-{t.number:04d}.yaml"
            name = f"{tune.study_name}-best" if single else f"{tune.study_name}-trial{t.number}"
            cfg = with_params(base, t.params, tune=tune, name=name)
            write_text(out / cfg_name, yaml.safe_dump(cfg, sort_keys=False))
        summary["best"] = [{"trial": t.number, "values": t.values, "params": t.params,
                            "run_dir": t.user_attrs.get("run_dir"), "features": t.user_attrs.get("features")}
                           for t in best_trials]
        if single:
            notes += [
                _save_plot(lambda: ovm.plot_optimization_history(study), out / "optimization_history.png"),
                _save_plot(lambda: ovm.plot_param_importances(study), out / "param_importances.png"),
                _save_plot(lambda: ovm.plot_parallel_coordinate(study), out / "parallel_coordinate.png"),
                _save_plot(lambda: ovm.plot_slice(study), out / "slice.png"),
                _save_plot(lambda: ovm.plot_intermediate_values(study), out / "intermediate_values.png"),
            ]
        else:
            names = [f"{o} ({d[:3]})" for o, d in zip(tune.objectives, tune.directions)]
            notes.append(_save_plot(lambda: ovm.plot_pareto_front(study, target_names=names), out / "pareto_front.png"))
    if retrained:
        summary["retrained"] = retrained
    write_json(out / "summary.json", summary)
    write_text(out / "summary.md", _markdown(study, tune, summary, best_trials, [n for n in notes if n]))
    return summary


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _markdown(study: optuna.Study, tune: TuneConfig, summary: dict[str, Any], best_trials: list,
              notes: list[str]) -> str:
    keys = list(tune.space)
    lines = [
        f"# Study `{tune.study_name}`",
        "",
        f"- base config: `{tune.base}`, overrides: {', '.join(f'`{s}`' for s in tune.set) or 'none'}",
        f"- objectives (held-out split): {', '.join(f'{o} ({d})' for o, d in zip(tune.objectives, tune.directions))}",
        f"- sampler: {tune.sampler.name} (seed {tune.sampler.seed}), pruner: {tune.pruner.name}"
        + (" (random start-up trials stopped at the first cut)" if tune.pruner.screens(tune.sampler.name) else "")
        + (f", {tune.cv_folds}-fold cross-validation" if tune.cv_folds else ""),
        f"- trials: {summary['trials']} ("
        + ", ".join(f"{n} {s}" for s, n in summary["states"].items() if n) + ")",
    ]
    extractors = sorted({t.user_attrs["features"] for t in study.trials if "features" in t.user_attrs})
    if extractors:  # the objective's FID & co. are in these features
        lines.append(f"- features: {', '.join(extractors)}")
    lines.append("")
    if best_trials:
        lines += ["## Best" + (" trial" if len(best_trials) == 1 else " trials (Pareto front)"), ""]
        lines += ["| trial | " + " | ".join(tune.objectives) + " | " + " | ".join(keys) + " |",
                  "|---" * (1 + len(tune.objectives) + len(keys)) + "|"]
        for t in best_trials:
            lines.append(f"| {t.number} | " + " | ".join(_fmt(v) for v in t.values) + " | "
                         + " | ".join(_fmt(t.params.get(k)) for k in keys) + " |")
        best_file = ("best_config.yaml" if len(best_trials) == 1
                     else f"best_config_trial-{best_trials[0].number:04d}.yaml")
        lines += ["", f"Train it: `genmodels train {tune.study_dir() / best_file}`", ""]
    lines += ["## All trials", "",
              "| trial | state | " + " | ".join(tune.objectives) + " | " + " | ".join(keys) + " | note |",
              "|---" * (3 + len(tune.objectives) + len(keys)) + "|"]
    for t in study.trials:
        values = t.values or [None] * len(tune.objectives)
        note = t.user_attrs.get("fail_reason") or t.user_attrs.get("prune_reason") or ""
        lines.append(f"| {t.number} | {t.state.name.lower()} | " + " | ".join(_fmt(v) for v in values) + " | "
                     + " | ".join(_fmt(t.params.get(k)) for k in keys) + f" | {note} |")
    if "retrained" in summary:
        r = summary["retrained"]
        lines += ["", "## Best config retrained on the whole training split, scored on the test split", "",
                  f"trial {r['trial']}, {r['images']:,} training images seen of {r['train_images']:,}: "
                  + ", ".join(f"{k} = {v:.4f}" for k, v in r["test"].items())
                  + (f" (features: {r['features']})" if r.get("features") else "")]
    plots = sorted(p.name for p in tune.study_dir().glob("*.png"))
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    if notes:
        lines += ["", "Notes: " + "; ".join(notes)]
    return "\n".join(lines) + "\n"
