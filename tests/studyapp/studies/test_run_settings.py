"""How to run, in the spec: backend, device and dtype per model; the job honours them; load_study prints a plan."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from studyapp.studies.generation_jobs import generation_start, model_run_options
from studyapp.studies.models import GenerationJob, LanguageModel
from studyapp.studies.spec import SpecError
from studyapp.studies.study_loading import study_load
from tests.studyapp.studies.conftest import tiny_spec


def _with_model_options(spec: str, options: str) -> str:
    return spec.replace('source: "', f'{options}, source: "', 1)


@pytest.mark.django_db
def test_spec_takes_backend_device_dtype_per_model(tiny_model_dir) -> None:
    spec = _with_model_options(tiny_spec(tiny_model_dir), "backend: hf, device: cpu, dtype: bfloat16")
    study, _ = study_load(content=spec)
    model = LanguageModel.objects.get(study=study)
    assert (model.backend, model.device, model.dtype) == ("hf", "cpu", "bfloat16")
    assert model_run_options(model=model) == {"backend": "hf", "device": "cpu", "dtype": "bfloat16"}
    plain, _ = study_load(content=tiny_spec(tiny_model_dir, slug="plain"))
    default = LanguageModel.objects.get(study=plain)
    assert model_run_options(model=default) == {"backend": "hf", "device": None, "dtype": None}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("options", "conditions", "problem"),
    [
        ("backend: tgi", ("base",), "models[0].backend: unknown value 'tgi'"),
        ("device: gpu0", ("base",), "models[0].device: unknown device 'gpu0'"),
        ("dtype: int4", ("base",), "models[0].dtype: unknown value 'int4'"),
        ("backend: vllm, device: cuda:1", ("base",), "CUDA_VISIBLE_DEVICES"),
        ("backend: vllm", ("base", "activation"), "activation steering needs forward hooks"),
    ],
)
def test_bad_run_settings_are_listed_with_their_path(tiny_model_dir, options, conditions, problem) -> None:
    spec = _with_model_options(tiny_spec(tiny_model_dir, conditions=conditions), options)
    with pytest.raises(SpecError) as caught:
        study_load(content=spec)
    assert any(problem in line for line in caught.value.problems), caught.value.problems


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("options", "message"),
    [("backend: vllm", "vllm"), ("device: cuda", "CUDA"), ("dtype: float16", None)],
)
def test_the_job_honours_the_models_run_settings(
    tiny_model_dir, celery_eager, django_capture_on_commit_callbacks, settings, tmp_path, options, message
) -> None:
    import torch

    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    if message == "CUDA" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA, so device: cuda succeeds (the failure is what shows it is used)")
    if message == "vllm":
        try:
            import vllm  # noqa: F401

            pytest.skip("vllm is installed here: the vllm job would run (see test_vllm_backend.py)")
        except ImportError:
            pass
    spec = _with_model_options(tiny_spec(tiny_model_dir, conditions=("base",), samples=1, items=("brick",)), options)
    study, _ = study_load(content=spec)
    with django_capture_on_commit_callbacks(execute=True):
        generation_start(study=study)
    job = GenerationJob.objects.get(deployment__study=study)
    if message is None:  # the dtype is checked by its effect on the text
        assert job.status == "succeeded", job.error_message
        float32, _ = study_load(
            content=tiny_spec(tiny_model_dir, slug="f32", conditions=("base",), samples=1, items=("brick",))
        )
        with django_capture_on_commit_callbacks(execute=True):
            generation_start(study=float32)
        other = GenerationJob.objects.get(deployment__study=float32)
        ours, theirs = job.stimuli.get(), other.stimuli.get()
        assert ours.seed == theirs.seed and ours.model_sha256 == theirs.model_sha256
        # Same weights, seed and prompt; float16 arithmetic gives other logits, hence (almost surely) other text.
        assert ours.text != theirs.text
    else:
        assert job.status == "failed" and message in job.error_message, job.error_message


@pytest.mark.django_db
def test_load_study_prints_the_generation_plan(tiny_model_dir) -> None:
    from studyapp.studies.models import Study

    path = tiny_model_dir.parent / "plan-spec.yaml"
    path.write_text(
        tiny_spec(tiny_model_dir, slug="planned", conditions=("base", "weight", "activation"), deployments=2)
    )
    out = io.StringIO()
    call_command("load_study", str(path), "--tokens-per-second", "400", stdout=out)
    text = out.getvalue()
    assert "generation plan:" in text
    row = next(line for line in text.splitlines() if line.startswith("tiny "))
    # 2 deployments x 3 conditions = 6 jobs; each condition generates 2 items x 2 samples once (twins are copied).
    fields = row.split()
    assert fields[1:4] == ["hf", "auto", "auto"] and fields[4:7] == ["6", "12", str(12 * 8)]
    assert "400 tok/s, given" in row
    assert f"{12 * 8 / 400 / 3600:.2f}" in row
    study = Study.objects.get(slug="planned")
    from studyapp.studies.plan import study_plan

    (plan,) = study_plan(study=study)
    assert plan.n_parameters and plan.artifact_bytes and plan.full_checkpoint_bytes
    assert plan.artifact_bytes < 0.03 * plan.full_checkpoint_bytes + 64 * 1024
