"""The NAT recipes validate, the sweep expands a recipe's method chains, the comparison table is exact."""

from pathlib import Path

import pytest

import misstep
from misstep_nat.commands import PRETRAINED, quickstart_recipe
from misstep_nat.compare import Row, markdown, merged
from misstep_nat.seeds import Spread, repeat
from misstep_nat.sweep import expand

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["quickstart.yaml", "nat-gsm8k.yaml", "nat-strategyqa.yaml"])
def test_recipes_validate(name):
    # the papers' data and models are downloaded separately: their paths are not checked here
    recipe = misstep.load_recipe(ROOT / "recipes" / name, plugins=misstep.get_plugins(), check_files=False)
    labels = [stage.label for stage in recipe.stages]
    assert {"train-vanilla", "train-nut", "train-nat", "eval-untrained", "eval-nat", "compare"} <= set(labels)


def test_the_packaged_quickstart_is_the_repository_recipe():
    assert (ROOT / "recipes" / "quickstart.yaml").resolve() == quickstart_recipe().resolve()


def test_paper_settings_in_the_gsm8k_recipe():
    recipe = misstep.load_recipe(ROOT / "recipes" / "nat-gsm8k.yaml", plugins=misstep.get_plugins(), check_files=False)
    stages = {stage.label: stage.build().options for stage in recipe.stages}
    assert stages["collect"].temperatures == [0.2, 0.5, 0.7] and stages["collect"].backend.use == "openai"
    assert stages["reformat-nat"].reformatter.options.pos_num == 2000
    assert stages["reformat-nat"].reformatter.options.neg_num == 10000
    for method in ("vanilla", "nut", "nat"):
        train = stages[f"train-{method}"]
        assert (train.epochs, train.learning_rate, train.lr_scheduler, train.warmup_ratio, train.precision,
                train.max_length) == (2, 5e-5, "cosine", 0.03, "bf16", 4096)
        assert train.batch_size * train.gradient_accumulation * train.processes == 64
        config = ROOT / train.deepspeed
        assert config.is_file() and '"stage": 3' in config.read_text()


def test_sweep_copies_each_chain_with_negatives_per_value():
    data = misstep.dump_recipe(misstep.load_recipe(quickstart_recipe(), plugins=misstep.get_plugins()))
    expanded, points = expand(data, [0, 50], None)
    labels = [stage.get("name") or stage["use"] for stage in expanded["stages"]]
    assert labels[: len(data["stages"])] == [s.get("name") or s["use"] for s in data["stages"]]  # base unchanged
    assert labels[len(data["stages"]):] == [
        f"{kind}-{method}-neg{n}" for n in (0, 50) for method in ("nut", "nat")
        for kind in ("reformat", "train", "eval")]
    by_label = dict(zip(labels, expanded["stages"]))
    assert by_label["reformat-nat-neg50"]["reformatter"]["neg_num"] == 50
    assert by_label["reformat-nat-neg50"]["reformatter"]["use"] == "nat"
    assert by_label["train-nat-neg50"]["examples"] == "reformat-nat-neg50"
    assert by_label["train-nat-neg50"]["init"] == "student"
    assert by_label["eval-nat-neg50"]["model"] == "train-nat-neg50"
    assert [(p.method, p.neg_num, p.stage) for p in points] == [
        ("untrained", None, "eval-untrained"), ("vanilla", None, "eval-vanilla"), ("nut", 0, "eval-nut-neg0"),
        ("nat", 0, "eval-nat-neg0"), ("nut", 50, "eval-nut-neg50"), ("nat", 50, "eval-nat-neg50")]
    misstep.validate_recipe(expanded, plugins=misstep.get_plugins())  # the expanded recipe is a valid recipe
    assert data["stages"][2]["reformatter"]["use"] == "vanilla" and len(data["stages"]) == 13  # input untouched


def test_sweep_picks_methods_and_says_what_is_missing():
    data = misstep.dump_recipe(misstep.load_recipe(quickstart_recipe(), plugins=misstep.get_plugins()))
    _, points = expand(data, [10], ["nat"])
    assert [(p.method, p.neg_num) for p in points] == [("untrained", None), ("vanilla", None), ("nat", 10)]
    expanded, points = expand(data, [600], ["nat"])  # the recipe's own neg_num: its chain is the point
    assert expanded == data and [(p.neg_num, p.stage) for p in points][2:] == [(600, "eval-nat")]
    with pytest.raises(misstep.MisstepError, match="no reformat -> train -> evaluate chain with negatives for vanilla"):
        expand(data, [10], ["vanilla"])


def test_comparison_table():
    rows = [Row("untrained", "eval-untrained", 200, 0.0, 1.0, 1.0, None, None),
            Row("nat", "eval-nat", 200, 0.615, 0.0125, 3.2, "nat", 1000)]
    assert markdown(rows, rows[0]) == (
        "| method | tasks | accuracy | vs baseline (points) | action-error rate | avg turns | trained on (examples) "
        "| reformatter |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
        "| untrained | 200 | 0.00% |  | 100.00% | 1.00 |  |  |\n"
        "| nat | 200 | 61.50% | +61.50 | 1.25% | 3.20 | 1000 | nat |\n")
    assert "vs baseline" not in markdown(rows, None)


def test_comparison_table_with_several_datasets():
    rows = [Row("untrained", "eval-untrained", 4, 0.25, 0.5, 1.5, None, None, {"gsm8k": 0.0, "svamp": 0.5}),
            Row("nat", "eval-nat", 4, 0.5, 0.0, 2.0, "nat", 10, {"gsm8k": 0.5, "svamp": 0.5})]
    lines = markdown(rows, rows[0]).splitlines()
    assert lines[0].endswith("| reformatter | gsm8k | svamp | mean of datasets |")
    assert lines[3] == "| nat | 4 | 50.00% | +25.00 | 0.00% | 2.00 | 10 | nat | 50.00% | 50.00% | 50.00% |"
    assert rows[0].flat()["accuracy_svamp"] == 0.5 and "datasets" not in rows[0].flat()


def test_seeds_repeat_every_chain_beside_its_stages():
    data = misstep.dump_recipe(misstep.load_recipe(quickstart_recipe(), plugins=misstep.get_plugins()))
    expanded, runs = repeat(data, [0, 1, 2])  # the recipe's seed is 0: its own stages are the seed-0 runs
    labels = [stage.get("name") or stage["use"] for stage in expanded["stages"]]
    by_label = dict(zip(labels, expanded["stages"]))
    for method in ("vanilla", "nut", "nat"):
        train = labels.index(f"train-{method}")
        assert labels[train: train + 3] == [f"train-{method}", f"train-{method}-s1", f"train-{method}-s2"]
        assert [by_label[f"train-{method}-s{s}"]["seed"] for s in (1, 2)] == [1, 2]
        assert by_label[f"train-{method}-s2"]["examples"] == f"reformat-{method}"  # the same examples
        assert by_label[f"eval-{method}-s2"]["model"] == f"train-{method}-s2"
        assert runs[f"eval-{method}"] == [(0, f"eval-{method}"), (1, f"eval-{method}-s1"), (2, f"eval-{method}-s2")]
    compare = by_label["compare"]
    assert compare["evaluations"][:4] == ["eval-untrained", "eval-vanilla", "eval-vanilla-s1", "eval-vanilla-s2"]
    assert compare["labels"]["eval-nat-s2"] == "nat" and "eval-untrained" not in runs
    misstep.validate_recipe(expanded, plugins=misstep.get_plugins())  # stages still come after their inputs
    with pytest.raises(misstep.MisstepError, match="no reformat -> train -> evaluate chain"):
        repeat({"seed": 0, "stages": [{"use": "tasks"}]}, [1])


def test_seed_runs_share_a_row_with_mean_and_spread():
    rows = [Row("untrained", "eval-untrained", 10, 0.0, 1.0, 1.0, None, None),
            Row("nat", "eval-nat", 10, 0.5, 0.1, 3.0, "nat", 100),
            Row("nat", "eval-nat-s1", 10, 0.7, 0.3, 2.0, "nat", 100)]
    table = merged(rows)
    assert [row.method for row in table] == ["untrained", "nat"]
    nat = table[1]
    assert nat.accuracy == pytest.approx(0.6) and nat.action_error_rate == pytest.approx(0.2) and nat.runs == [0.5, 0.7]
    lines = markdown(table, table[0]).splitlines()
    assert "accuracy (mean ± sd)" in lines[0]
    assert lines[3].startswith("| nat | 10 | 60.00% ± 14.14 | +60.00 | 20.00% | 2.50 |")
    assert Spread.of([0.5]).percent() == "50.00%"


def test_quickstart_model_option_trains_lora_on_a_pretrained_model():
    recipe = misstep.load_recipe(quickstart_recipe(), ["stages.student.model=tiny", *PRETRAINED],
                                 plugins=misstep.get_plugins())
    assert recipe.model.dtype == "auto" and recipe.model.lora.target_modules == "all-linear"
    stages = {stage.label: stage.build().options for stage in recipe.stages}
    assert stages["student"].model == "tiny"
    for method in ("vanilla", "nut", "nat"):
        train = stages[f"train-{method}"]
        assert (train.learning_rate, train.max_steps, train.batch_size, train.packing) == (5e-4, 40, 8, True)
