"""Issue 16 point 4 (enums, not strings) for export: the engine is an ExportTarget, read from the
command line once; pools are told apart by PoolRole; the text written is the same as by name."""

from click.testing import CliRunner

from meshplan.cli.main import main
from meshplan.export import ENGINE_VERSIONS
from meshplan.export.common import ExportTarget
from meshplan.export.export import export
from meshplan.io.problem_file import problem_from_raw
from meshplan.plan.pools import Pool
from meshplan.specs.engine import Engine
from meshplan.specs.workload import Phase, PoolRole
from meshplan.strategy.layout import Layout


def _problem():
    return problem_from_raw({"model": "deepseek-v3", "gpu": "h800", "precision": {"weights": "fp8", "kv_cache": "fp8"},
                             "workload": {"isl": 2000, "osl": 500}})


DISAGG = [Pool(phases=(Phase.PREFILL,), layout=Layout(tp=1, dp=8, ep=8), B={Phase.PREFILL: 2.0}, offset=0),
          Pool(phases=(Phase.DECODE,), layout=Layout(tp=1, dp=16, ep=16), B={Phase.DECODE: 64.0}, offset=8)]


def test_every_engine_is_a_target_and_devicemesh_is_none():
    assert [t.engine for t in ExportTarget] == [Engine.VLLM, Engine.SGLANG, Engine.TRTLLM, None]
    assert set(ENGINE_VERSIONS) == set(ExportTarget)
    assert ENGINE_VERSIONS["vllm"] == ENGINE_VERSIONS[ExportTarget.VLLM] == "0.11"  # a StrEnum key reads by name


def test_export_by_member_is_export_by_name_and_holds_members():
    problem = _problem()
    for target in ExportTarget:
        by_member = export(problem, DISAGG, target)
        by_name = export(problem, DISAGG, target.value)
        assert by_member.engine is by_name.engine is target
        assert by_member.files == by_name.files and by_member.notes == by_name.notes
    # The front end of a disaggregated plan is found by PoolRole.
    assert "router.sh" in export(problem, DISAGG, ExportTarget.SGLANG).files
    assert "disagg.yaml" in export(problem, DISAGG, ExportTarget.TRTLLM).files


def test_a_substitution_names_its_pool_by_role():
    agg = Pool(phases=(Phase.PREFILL, Phase.DECODE), layout=Layout(tp=8, dp=1, ep=2, etp=4),
               B={Phase.PREFILL: 8.0, Phase.DECODE: 8.0}, offset=0)
    (sub,) = export(_problem(), [agg], ExportTarget.VLLM).substitutions
    assert sub.role is PoolRole.AGGREGATED and f"{sub.role} pool" == "aggregated pool"


def test_an_unknown_engine_at_the_command_line_is_one_line_exit_2(tmp_path):
    r = CliRunner().invoke(main, ["export", "--engine", "tgi", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert lines == ["error: --engine: 'tgi' is not one of 'vllm', 'sglang', 'trtllm', 'devicemesh'"]
    assert not (tmp_path / "o").exists()
