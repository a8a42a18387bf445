"""The CLI over the S3 emulator: one-line errors with exit 2, and no credential stored anywhere."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import SimpleITK as sitk
from faults import FaultProxy
from s3_bucket import N5, ZARR
from typer.testing import CliRunner

from coframe.cli import app

SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIASENTINELKEYID0001",
    "AWS_SECRET_ACCESS_KEY": "sentinel/secret+access+key/0002",
    "AWS_SESSION_TOKEN": "sentinel-session-token-0003",
}


def test_info_over_s3_prints_the_levels(proxy: FaultProxy, runner: CliRunner) -> None:
    result = runner.invoke(app, ["info", ZARR, "--json"])
    assert result.exit_code == 0, result.output
    assert '"voxel_size"' in result.stdout and ZARR in result.stdout


def test_info_through_a_lasting_fault_is_one_line_and_exit_2(
    proxy: FaultProxy, runner: CliRunner
) -> None:
    proxy.set("503")
    result = runner.invoke(app, ["info", N5])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: cannot read {N5}/")
    assert "after 3 attempts" in lines[0] and "COFRAME_REMOTE_ATTEMPTS" in lines[0]


def test_no_credential_is_sent_stored_or_logged(
    proxy: FaultProxy,
    runner: CliRunner,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    ws = tmp_path / "ws"
    tfm = tmp_path / "identity.tfm"
    sitk.WriteTransform(sitk.AffineTransform(3), str(tfm))
    caplog.set_level(logging.DEBUG)
    for args in (
        ["init", str(ws)],
        ["add", "fibsem", ZARR, "--modality", "fibsem", "-w", str(ws)],
        ["add", "n5", N5, "--modality", "fibsem", "-w", str(ws)],
        ["link", "fibsem", "n5", str(tfm), "-w", str(ws)],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert not any(v in result.output for v in SECRETS.values())
    assert ZARR in (ws / "coframe.yaml").read_text()
    stored = [p.read_bytes() for p in ws.rglob("*") if p.is_file()]
    assert len(stored) >= 2  # the workspace file and the edge with its provenance
    for value in SECRETS.values():
        assert not any(value.encode() in data for data in stored)
        assert value not in caplog.text
    # anonymous: no request was signed or carried a token
    assert proxy.headers_seen
    for headers in proxy.headers_seen:
        assert "authorization" not in headers.lower()
        assert "x-amz-security-token" not in headers.lower()
        assert not any(v in headers for v in SECRETS.values())


def test_a_failed_add_leaves_the_workspace_as_it_was(
    proxy: FaultProxy, runner: CliRunner, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    assert runner.invoke(app, ["init", str(ws)]).exit_code == 0
    before = (ws / "coframe.yaml").read_bytes()
    proxy.set("drop", match="/s0/")
    result = runner.invoke(app, ["add", "fibsem", ZARR, "-w", str(ws)])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and ZARR in result.stderr
    assert (ws / "coframe.yaml").read_bytes() == before
    assert sorted(p.name for p in ws.iterdir()) == [".coframe.yaml.lock", "coframe.yaml"]
