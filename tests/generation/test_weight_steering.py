"""CreativityNeuro weight edit: exactly the masked weights change, by exactly 1 + alpha."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from generation.loading import load_model
from generation.prompt_sets import SHIPPED_PROMPT_SETS, get_prompt_set, load_prompt_sets
from generation.weight_steering import (
    WeightSteeringConfig,
    apply_weight_edit,
    compute_norms,
    edit_mask,
    save_steered_checkpoint,
    select_target_linears,
    steer_weights,
)


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def _logits(model: torch.nn.Module) -> torch.Tensor:
    ids = torch.tensor([[1, 520, 33, 4019, 7, 2938, 11]])
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("name", SHIPPED_PROMPT_SETS)
def test_shipped_prompt_sets_are_paired(name: str) -> None:
    prompts = get_prompt_set(name)
    assert len(prompts.divergent) == len(prompts.convergent) >= 10
    assert len(set(prompts.divergent) | set(prompts.convergent)) == 2 * len(prompts.divergent)


def test_researcher_prompt_file(tmp_path: Path) -> None:
    path = tmp_path / "prompts.yaml"
    path.write_text("mine:\n  pairs:\n    - {divergent: be odd, convergent: be plain}\n")
    assert load_prompt_sets(path)["mine"].divergent == ("be odd",)
    path.write_text("mine:\n  pairs:\n    - {divergent: be odd}\n")
    with pytest.raises(ValueError, match="'divergent' and 'convergent'"):
        load_prompt_sets(path)


def test_mask_is_top_divergent_minus_top_convergent() -> None:
    weight = torch.tensor([[4.0, -3.0, 2.0, 1.0]])
    # Divergent activity favours the last columns, convergent the first.
    divergent = torch.tensor([1.0, 1.0, 10.0, 10.0])
    convergent = torch.tensor([10.0, 10.0, 1.0, 1.0])
    mask = edit_mask(weight, divergent, convergent, rho=0.5)
    # top-2 div: |w|*n = [4, 3, 20, 10] -> cols 2, 3; top-2 conv: [40, 30, 2, 1] -> cols 0, 1.
    assert mask.tolist() == [[False, False, True, True]]
    assert not edit_mask(weight, divergent, divergent, rho=0.5).any()  # same prompts: empty set difference


def test_per_row_ranking_takes_the_top_share_of_each_row() -> None:
    weight = torch.tensor([[1.0, 2.0, 3.0, 4.0], [40.0, 30.0, 20.0, 10.0]])
    divergent = torch.ones(4)
    convergent = torch.tensor([1.0, 1.0, 1.0, 100.0])  # convergent top sets: column 3
    # Per row (1 of 4): divergent picks column 3 in row 0 (removed by convergent) and column 0 in row 1.
    assert edit_mask(weight, divergent, convergent, rho=0.25, ranking="row").tolist() == [
        [False, False, False, False],
        [True, False, False, False],
    ]
    # Per matrix (2 of 8): divergent picks 40 and 30, both in row 1; convergent picks column 3.
    assert edit_mask(weight, divergent, convergent, rho=0.25, ranking="matrix").tolist() == [
        [False, False, False, False],
        [True, True, False, False],
    ]


def test_edit_changes_exactly_the_masked_weights_by_one_plus_alpha(tiny_loaded) -> None:
    model = tiny_loaded.model
    before = _state(model)
    config = WeightSteeringConfig(rho=0.2, alpha=0.5)
    norms = compute_norms(tiny_loaded, config)
    masks = {
        t.name: edit_mask(t.module.weight, norms.divergent[t.name], norms.convergent[t.name], 0.2)
        for t in norms.targets
    }
    edit = apply_weight_edit(norms.targets, norms.divergent, norms.convergent, rho=0.2, alpha=0.5)
    after = model.state_dict()
    edited = 0
    for name, tensor in after.items():
        old = before[name]
        module_name = name.removesuffix(".weight")
        if module_name in masks:
            mask = masks[module_name]
            assert torch.equal(tensor[mask], old[mask] * 1.5)
            assert torch.equal(tensor[~mask], old[~mask])
            edited += int(mask.sum())
        else:
            assert torch.equal(tensor, old), name  # embeddings, norms: untouched
    assert edited == edit.n_edited > 0
    # The mask is a subset of the top-rho set of each matrix: at most rho of each, and of the total.
    for target in norms.targets:
        assert masks[target.name].sum() <= int(0.2 * target.module.weight.numel())
    assert 0 < edit.share_edited <= 0.2
    assert sum(layer["edited"] for layer in edit.per_layer.values()) == edit.n_edited


def test_larger_rho_edits_a_larger_share(tiny_loaded) -> None:
    norms = compute_norms(tiny_loaded, WeightSteeringConfig())
    shares = []
    for rho in (0.05, 0.2, 0.5):
        edit = apply_weight_edit(norms.targets, norms.divergent, norms.convergent, rho=rho, alpha=1.0, keep_undo=True)
        shares.append(edit.share_edited)
        edit.undo()
    assert 0 < shares[0] < shares[1] < shares[2] <= 0.5


@pytest.mark.parametrize(("rho", "alpha"), [(0.0, 1.0), (0.1, 0.0)])
def test_rho_or_alpha_zero_leaves_the_model_bit_identical(tiny_loaded, rho: float, alpha: float) -> None:
    before = _state(tiny_loaded.model)
    steer_weights(tiny_loaded, WeightSteeringConfig(rho=rho, alpha=alpha))
    after = tiny_loaded.model.state_dict()
    assert all(torch.equal(after[name], before[name]) for name in before)


def test_undo_restores_the_exact_bits(tiny_loaded) -> None:
    before = _state(tiny_loaded.model)
    norms = compute_norms(tiny_loaded, WeightSteeringConfig())
    edit = apply_weight_edit(norms.targets, norms.divergent, norms.convergent, rho=0.3, alpha=0.7, keep_undo=True)
    edit.undo()
    after = tiny_loaded.model.state_dict()
    assert all(torch.equal(after[name], before[name]) for name in before)


def test_module_patterns_and_layers_limit_the_targets(tiny_loaded) -> None:
    targets = select_target_linears(tiny_loaded.model, ("mlp.*",), "2-3")
    assert {t.layer for t in targets} == {2, 3}
    assert {t.name.rsplit(".", 1)[-1] for t in targets} == {"gate_proj", "up_proj", "down_proj"}
    with pytest.raises(ValueError, match="no linear layer matches"):
        select_target_linears(tiny_loaded.model, ("nothing",))


def test_saved_checkpoint_reloads_to_the_same_logits_with_a_manifest(tiny_loaded, tmp_path: Path) -> None:
    config = WeightSteeringConfig(rho=0.1, alpha=1.0, layers="1-3", module_patterns=("self_attn.*", "mlp.down_proj"))
    manifest = steer_weights(tiny_loaded, config)
    out = tmp_path / "steered"
    digest = save_steered_checkpoint(tiny_loaded, manifest, out)
    reloaded = load_model(out, device="cpu")
    assert torch.equal(_logits(reloaded.model), _logits(tiny_loaded.model))
    assert reloaded.sha256 == digest != tiny_loaded.sha256

    saved = json.loads((out / "manifest.json").read_text())
    assert saved["method"] == "weight"
    assert saved["parameters"]["rho"] == 0.1 and saved["parameters"]["alpha"] == 1.0
    assert saved["parameters"]["prompt_set"] == "dat"
    assert saved["base_model"]["sha256"] == tiny_loaded.sha256
    assert saved["sha256"] == digest
    assert saved["layers"] == [1, 2, 3]
    assert set(saved["per_layer"]) == {"1", "2", "3"}
    assert saved["n_weights_edited"] / saved["n_weights_considered"] == pytest.approx(saved["share_edited"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_config_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="rho"):
        WeightSteeringConfig(rho=1.5)
    with pytest.raises(ValueError, match="ranking"):
        WeightSteeringConfig(ranking="column")
    with pytest.raises(ValueError, match="unknown weight-steering parameters: beta"):
        WeightSteeringConfig.from_params({"beta": 1})
