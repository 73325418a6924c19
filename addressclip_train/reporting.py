"""What a training run leaves for people: the model card (huggingface_hub ModelCard) and training curves."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from addressclip_train.trainer import LOSS_PARTS

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

METRIC_NAMES = {"ssa@1": "SSA-1", "ssa@5": "SSA-5", "sa@1": "SA-1", "sa@5": "SA-5"}
WITHIN = re.compile(r"^within_([0-9.]+)(k?m)$")  # distance_accuracy's share keys: within_25m, within_1km


def result_rows(metrics: Mapping[str, float]) -> list[tuple[str, str, str, float]]:
    """(key, name, shown value, card value) of every reported result among ``eval_*`` metrics, in order: SSA/SA as
    percentages, then the distance metrics (median error in metres, the shares within each threshold)."""
    rows = [
        (key, name, f"{100 * metrics[f'eval_{key}']:.2f}%", round(100 * metrics[f"eval_{key}"], 2))
        for key, name in METRIC_NAMES.items()
        if f"eval_{key}" in metrics
    ]
    if "eval_median_error_m" in metrics:
        error = float(metrics["eval_median_error_m"])
        rows.append(("median_error_m", "median error (top-1 place)", f"{error:.1f} m", round(error, 1)))
    for key, value in metrics.items():
        if match := WITHIN.match(key.removeprefix("eval_")):
            name = f"within {match[1]} {match[2]}"
            rows.append((match[0], name, f"{100 * value:.2f}%", round(100 * value, 2)))
    return rows


def distance_summary(metrics: Mapping[str, float]) -> str:
    """One line for a run's printout: how far the top-1 places were from the photos ("" without distances)."""
    rows = [(name, shown) for key, name, shown, _ in result_rows(metrics) if key not in METRIC_NAMES]
    if not rows:
        return ""
    samples = metrics.get("eval_distance_samples")
    scored = f" over {int(samples)} query photos" if samples is not None else ""
    return "  distance to the photo" + scored + ": " + " · ".join(f"{name} {shown}" for name, shown in rows)


_CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ model_id }}

AddressCLIP (ECCV 2024) image address localization model: given a street-level photo it ranks the
candidate addresses of its address bank ({{ bank_size }} addresses) and returns the most similar.

## Use

`{{ repo }}` is {{ repo_note }}.

```python
from transformers import pipeline

localizer = pipeline("image-address-localization", model="{{ repo }}", trust_remote_code=True)
localizer("street.jpg", top_k=5)  # [{"address", "score", "similarity", "main_street", ...}, ...]

# transformers' zero-shot task works too; with trust_remote_code its default template is the address prompt
labels = pipeline("zero-shot-image-classification", model="{{ repo }}", trust_remote_code=True)
labels("street.jpg", candidate_labels=["Mannerheimintie", "Bulevardi"])
```

`score` is a softmax over the candidates (a ranking score that sums to 1, not a calibrated probability of
the place); `similarity` is the cosine between image and address embeddings.
{% if abstention %}
## Abstaining: "no confident address"

The pipeline answers only when the top-1 `score` reaches `min_score`, whose default
(`config.abstain_threshold` = {{ "%.4f"|format(threshold) }}) keeps {{ "%.0f"|format(100 * coverage) }}% of the
query split answered; below it a photo (not a street view, not this city) gets `[]`. Pass `min_score=0` to
always answer. The trade-off on the query split:

| threshold (top-1 score) | answered | SSA-1 of the answered |
|---|---|---|
{% for row in abstention %}| {{ row }} |
{% endfor %}
{% endif %}
## Results on the `query` split of {{ dataset }}

| metric | value |
|---|---|
{% for name, value in results %}| {{ name }} | {{ value }} |
{% endfor %}{% if distance_samples %}
Distances are geodesic (WGS84), from the top-1 address's place (a point on its sub-street, saved with the
address bank) to where each of {{ distance_samples }} query photos was taken.
{% endif %}

## Training recipe

| setting | value |
|---|---|
{% for key, value in recipe %}| {{ key }} | {{ value }} |
{% endfor %}

![training curves](training_curves.png)

## Limitations

AddressCLIP is discriminative: it can only answer with an address of its bank, built from the
training and database splits of one city. Photos from elsewhere still get the nearest address of
that city. Accuracy reported above is on held-out views of the *same* streets.
{{ limitations }}

## Citation

```bibtex
@inproceedings{xu2024addressclip,
  title     = {AddressCLIP: Empowering Vision-Language Models for City-wide Image Address Localization},
  author    = {Xu, Shixiong and Zhang, Chenghao and Fan, Lubin and Meng, Gaofeng and Xiang, Shiming and Ye, Jieping},
  booktitle = {Computer Vision -- ECCV 2024},
  year      = {2024},
}
```
{% if attribution %}
## Data attribution

Training data derived from OpenStreetMap: {{ attribution }}
{% endif %}"""


def _card_value(value: Any) -> Any:
    """A recipe value as a reader wants it: enums by their value (``cosine``, not ``SchedulerType.COSINE``)."""
    value = getattr(value, "value", value)
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def write_model_card(
    output_dir: str | Path,
    metrics: Mapping[str, float],
    dataset: str,
    recipe: Mapping[str, Any],
    bank_size: int,
    model_id: str = "AddressCLIP",
    attribution: str | None = None,
    limitations: str = "",
    license: str | None = None,
    dataset_hub_id: str | None = None,
    abstention: Sequence[Any] = (),
    threshold: float | None = None,
    coverage: float | None = None,
    repo_note: str | None = None,
    repo: str | None = None,
) -> ModelCard:
    """Write ``README.md`` with eval results (``eval_ssa@1`` ..., and the distance metrics ``eval_median_error_m``,
    ``eval_within_25m`` ... where the run had them), the recipe and the data attribution.

    ``license`` is the training data's (default: ODbL with an OpenStreetMap ``attribution``, else Apache-2.0,
    the code's); ``dataset_hub_id`` goes into the card's ``datasets:`` metadata only when the data is on the Hub.
    """
    rows = result_rows(metrics)
    eval_results = [
        EvalResult(
            task_type="image-classification",
            task_name="Image address localization",
            dataset_type=dataset,
            dataset_name=dataset,
            dataset_split="query",
            metric_type=name.lower() if key in METRIC_NAMES else key,
            metric_name=name,
            metric_value=value,
        )
        for key, name, _, value in rows
    ]
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag="zero-shot-image-classification",
        license=license or ("odbl" if attribution else "apache-2.0"),
        tags=["addressclip", "image-address-localization", "clip"],
        datasets=[dataset_hub_id] if dataset_hub_id else None,
        model_name=model_id,
        eval_results=eval_results or None,
    )
    card = ModelCard.from_template(
        data,
        template_str=_CARD_TEMPLATE,
        model_id=model_id,
        repo=repo or model_id,
        dataset=dataset,
        bank_size=bank_size,
        results=[(name, shown) for _, name, shown, _ in rows],
        distance_samples=metrics.get("eval_distance_samples"),
        recipe=[(k, _card_value(v)) for k, v in recipe.items()],
        attribution=attribution,
        limitations=limitations,
        abstention=[f"{p.threshold:.4f} | {100 * p.coverage:.1f}% | {100 * p.ssa_at_1:.2f}%" for p in abstention],
        threshold=threshold or 0.0,
        coverage=coverage or 0.0,
        repo_note=repo_note or "this model's directory (after `push_to_hub`, its Hub repository id)",
    )
    card.save(Path(output_dir) / "README.md")
    return card


def plot_training_curves(log_history: Sequence[Mapping[str, float]], path: str | Path) -> Path:
    """Plot the three loss parts per step and SSA/SA (and the within-distance shares) per evaluation into one PNG."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name in (*LOSS_PARTS, "loss"):
        points = [(log["step"], log[name]) for log in log_history if name in log and "step" in log]
        if points:
            left.plot(*zip(*points), label=name, linewidth=2 if name == "loss" else 1)
    left.set(xlabel="step", ylabel="loss", title="training loss (Eq. 6) and its parts")
    left.legend()
    within = sorted({k for log in log_history for k in log if WITHIN.match(k.removeprefix("eval_"))})
    curves = [(f"eval_{key}", label, "-") for key, label in METRIC_NAMES.items()] + [(k, k[5:], "--") for k in within]
    for key, label, style in curves:
        points = [(log.get("epoch", 0.0), 100 * log[key]) for log in log_history if key in log]
        if points:
            right.plot(*zip(*points), marker="o", ls=style, label=label)
    right.set(xlabel="epoch", ylabel="accuracy (%)", title="query split", ylim=(0, 100))
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


__all__ = ["distance_summary", "plot_training_curves", "result_rows", "write_model_card"]
