"""The chart installs berth's CRDs from the single source in crds/ (no copy that could drift), and
crds.keep protects them from an uninstall."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from .conftest import CHART_DIR, REPO_ROOT, Chart

SOURCE_CRDS = REPO_ROOT / "crds"


def _source_crds() -> dict[str, dict]:
    crds = {}
    for path in sorted(SOURCE_CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        crds[crd["metadata"]["name"]] = crd
    return crds


def test_chart_reads_the_crds_through_a_link_to_the_repository_crds_folder() -> None:
    link = CHART_DIR / "files" / "crds"
    assert link.is_symlink(), "charts/berth/files/crds must be a link, not a copy of crds/"
    assert Path(os.path.realpath(link)) == SOURCE_CRDS.resolve()


def test_rendered_crds_are_the_generated_ones_with_the_keep_policy(chart: Chart) -> None:
    source = _source_crds()
    assert "inferencedeployments.berth.dev" in source
    rendered = {crd["metadata"]["name"]: crd for crd in chart.render().find("CustomResourceDefinition")}
    assert rendered.keys() == source.keys()
    for name, crd in rendered.items():
        assert crd["spec"] == source[name]["spec"], f"{name}: the chart changed the CRD's spec"
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert source[name]["metadata"].get("labels", {}).items() <= crd["metadata"]["labels"].items()
        assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"


def test_crds_not_kept_carry_no_keep_policy(chart: Chart) -> None:
    for crd in chart.render({"crds": {"keep": False}}).find("CustomResourceDefinition"):
        assert "helm.sh/resource-policy" not in crd["metadata"].get("annotations", {})


def test_crds_disabled_are_not_rendered(chart: Chart) -> None:
    assert not chart.render({"crds": {"enabled": False}}).find("CustomResourceDefinition")


def test_kopf_peering_crds_are_the_only_ones_in_the_charts_own_crds_folder() -> None:
    kinds = set()
    for path in (CHART_DIR / "crds").glob("*.yaml"):
        for document in yaml.safe_load_all(path.read_text()):
            assert document["spec"]["group"] == "kopf.dev", f"{path}: berth's CRDs belong in crds/ only"
            kinds.add(document["spec"]["names"]["kind"])
    assert kinds == {"ClusterKopfPeering", "KopfPeering"}


def test_packaged_chart_carries_the_crd_files_themselves(chart: Chart, tmp_path: Path) -> None:
    packaged = chart.run("package", str(CHART_DIR), "--destination", str(tmp_path))
    assert packaged.returncode == 0, packaged.stderr
    (archive,) = tmp_path.glob("berth-*.tgz")
    rendered = chart.run("template", "berth", str(archive), "--namespace", "berth-system")
    assert rendered.returncode == 0, rendered.stderr
    crds = [
        doc
        for doc in yaml.safe_load_all(rendered.stdout)
        if doc and doc["kind"] == "CustomResourceDefinition"
    ]
    assert [crd["spec"] for crd in crds] == [crd["spec"] for crd in _source_crds().values()]
