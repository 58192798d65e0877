"""The series machinery on a synthetic upstream: apply, export, drift, headers, overlay, PR, rebase, pins."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest

from conftest import FAKE_REVISION, NORM, TRACKING, FakeProject, base_files, make_sdist
from fiseries.git import run_git
from fiseries.series import header_problems, parse_patch_message


def patch_file(project: FakeProject, target: str, number: int) -> Path:
    return sorted((project.root / "patches" / target).glob(f"{number:04d}-*.patch"))[0]


def test_export_names_and_content(fake: FakeProject) -> None:
    series = (fake.root / "patches/flashinfer/series").read_text().split()
    assert [s for s in series if s.endswith(".patch")] == [
        "0001-norm-scale-by-two.patch", "0002-norm-hook-the-fused-quant-header.patch"]
    text = patch_file(fake, "flashinfer", 1).read_text()
    assert text.startswith("From 0000000000000000000000000000000000000000 ")
    assert "\nDate: " not in text and "\nSubject: norm: scale by two\n" in text
    assert re.search(r"^index [0-9a-f]{40}\.\.[0-9a-f]{40} ", text, re.M)  # --full-index
    assert (fake.root / "csrc_overrides/include/flashinfer/norm_quant.cuh").read_text() == "// new fused kernel\n"
    assert len(list((fake.root / "patches/cutlass").glob("*.patch"))) == 1


def test_apply_export_round_trip_is_byte_identical(fake: FakeProject) -> None:
    before = fake.snapshot()
    fake.ok("apply")
    fake.ok("export")
    assert fake.snapshot() == before
    assert "byte-identical" in fake.ok("check")


def test_apply_is_one_commit_per_patch_plus_overlay(fake: FakeProject) -> None:
    fake.ok("apply")
    tree = fake.root / "build/tree"
    subjects = run_git(tree, "log", "--format=%s", "upstream/1.0..HEAD").stdout.split("\n")
    assert subjects[:3] == ["fiseries: overlay csrc_overrides", "norm: hook the fused quant header",
                            "norm: scale by two"]
    assert run_git(tree, "status", "--porcelain").stdout == ""
    assert "line 10 x2" in (tree / "csrc/norm.cu").read_text()
    cutlass = tree / "3rdparty/cutlass"
    assert run_git(cutlass, "log", "--format=%s", "-1").stdout.strip() == "sm120: pad SFA to 128 rows"


def test_shifted_hunk_is_caught_and_fix_is_written(fake: FakeProject) -> None:
    patch = patch_file(fake, "flashinfer", 1)
    good = patch.read_text()
    shifted = re.sub(r"^@@ -(\d+),", lambda m: f"@@ -{int(m[1]) + 3},", good, count=1, flags=re.M)
    assert shifted != good
    patch.write_text(shifted)
    err = fake.fail("apply")
    assert patch.name in err and "csrc/norm.cu" in err and "make export" in err
    err = fake.fail("check")
    assert f"patches/flashinfer/{patch.name}" in err
    update = fake.root / "build/update-patches.patch"
    subprocess.run(["git", "apply", str(update)], cwd=fake.root, check=True)
    assert patch.read_text() == good
    fake.ok("check")


def test_context_changed_patch_is_caught(fake: FakeProject) -> None:
    patch = patch_file(fake, "flashinfer", 1)
    good = patch.read_text()
    patch.write_text(good.replace(" // upstream norm line 8\n", " // upstream norm line 8 \n", 1))
    err = fake.fail("apply")
    assert patch.name in err


VALID = """From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001
From: A <a@b>
Subject: norm: a change with a subject long enough to be folded by
 git format-patch

Why: upstream is slow (23% of copy).

What: a kernel.

Tested: tests/test_x.py on H100.

Upstream-Status: {status}
---
diff --git a/x b/x
"""


@pytest.mark.parametrize("status", ["Pending", "Submitted https://github.com/flashinfer-ai/flashinfer/pull/1",
                                    "Backport 0123456789ab", "Denied too specific",
                                    "Inappropriate [fork-only build glue]"])
def test_valid_headers(status: str) -> None:
    header = parse_patch_message(VALID.format(status=status))
    assert header.subject.endswith("folded by git format-patch")
    assert header_problems(header) == []


@pytest.mark.parametrize("status,problem", [
    ("Accepted", "malformed 'Upstream-Status: Accepted'"),
    ("Submitted", "malformed"),
    ("Backport soon", "malformed"),
    ("Pending\nForwarded: maybe", "malformed 'Forwarded: maybe'"),
    ("Pending\nUpstream-Status: Pending", "exactly one"),
])
def test_malformed_headers(status: str, problem: str) -> None:
    problems = header_problems(parse_patch_message(VALID.format(status=status)))
    assert any(problem in p for p in problems), problems


def test_missing_sections_and_trailer_fail_the_check(fake: FakeProject) -> None:
    patch = patch_file(fake, "flashinfer", 1)
    patch.write_text(patch.read_text().replace("Tested: how it is tested.\n\n", "")
                     .replace("Upstream-Status: Pending\n", ""))
    err = fake.fail("check")
    assert patch.name in err and "Tested:" in err and "Upstream-Status" in err


def test_overlay_may_not_replace_upstream_files(fake: FakeProject) -> None:
    clash = fake.root / "csrc_overrides/csrc/norm.cu"
    clash.parent.mkdir(parents=True)
    clash.write_text("// replaced\n")
    patch = patch_file(fake, "flashinfer", 2)
    patch.write_text(patch.read_text().replace(
        "Adds-File: include/flashinfer/norm_quant.cuh",
        "Adds-File: include/flashinfer/norm_quant.cuh\nAdds-File: csrc/norm.cu"))
    err = fake.fail("apply")
    assert "csrc_overrides/csrc/norm.cu would replace the existing upstream file csrc/norm.cu" in err


def test_overlay_files_need_an_owner(fake: FakeProject) -> None:
    stray = fake.root / "csrc_overrides/csrc/stray.cu"
    stray.parent.mkdir(parents=True)
    stray.write_text("//\n")
    assert "csrc/stray.cu is not claimed by any patch" in fake.fail("apply")


def test_tracking_references_must_resolve(fake: FakeProject) -> None:
    tracking = fake.root / "tracking.md"
    tracking.write_text(tracking.read_text().replace("upstream norm line 5", "no such line"))
    err = fake.fail("check")
    assert "snippet `no such line` no longer found" in err and "csrc/norm.cu" in err


def test_lock_tree_hash_is_checked(fake: FakeProject) -> None:
    lock = json.loads((fake.root / "upstreams.lock.json").read_text())
    lock["targets"][0]["tree"] = "0" * 40
    (fake.root / "upstreams.lock.json").write_text(json.dumps(lock))
    assert "make export" in fake.fail("check")


def test_pr_branch_holds_exactly_the_patch(fake: FakeProject) -> None:
    out = fake.ok("pr", "2")
    repo = fake.root / "build/pr/0002-norm-hook-the-fused-quant-header"
    assert "pr/0002-norm-hook-the-fused-quant-header" in out
    log = run_git(repo, "log", "--format=%s", "upstream/1.0..pr/0002-norm-hook-the-fused-quant-header")
    assert log.stdout.split("\n")[0] == "norm: hook the fused quant header"
    assert len(log.stdout.strip().split("\n")) == 1
    message = run_git(repo, "log", "-1", "--format=%B").stdout
    assert "Why:" in message and "Upstream-Status" not in message and "Adds-File" not in message
    diff = run_git(repo, "diff", "--full-index", "upstream/1.0", "HEAD").stdout
    patch_text = patch_file(fake, "flashinfer", 2).read_text()
    patch_diff = patch_text[patch_text.index("diff --git"):]
    files = run_git(repo, "diff", "--name-status", "upstream/1.0", "HEAD").stdout.split("\n")
    assert sorted(filter(None, files)) == ["A\tinclude/flashinfer/norm_quant.cuh",
                                           "M\tinclude/flashinfer/norm.cuh"]
    assert patch_diff.rstrip("\n") in diff
    assert "+// new fused kernel" in diff
    assert not (repo / "3rdparty/cutlass").exists()


def test_pr_for_a_cutlass_patch(fake: FakeProject) -> None:
    fake.ok("pr", "cutlass/1")
    repo = fake.root / "build/pr/0001-sm120-pad-SFA-to-128-rows"
    assert "line 20 padded" in (repo / "include/cutlass/gemm.h").read_text()
    ambiguous = fake.fail("pr", "norm")  # two flashinfer patches match 'norm'
    assert "must name exactly one patch" in ambiguous, ambiguous
    assert "flashinfer/0001-norm-scale-by-two.patch" in ambiguous
    assert "flashinfer/0002-norm-hook-the-fused-quant-header.patch" in ambiguous


def _next_release(fake: FakeProject, files: dict[str, str], version: str = "1.1") -> Path:
    return make_sdist(fake.sdist.parent, version, "3" * 40, files)


def test_rebase_drops_merged_patch_and_keeps_the_rest(fake: FakeProject) -> None:
    files = base_files()
    merged = files["csrc/norm.cu"].replace("line 10\n", "line 10 x2\n")  # patch 0001 merged upstream
    files["csrc/norm.cu"] = "// new upstream preamble\n" + merged  # plus an unrelated change
    files["csrc/other.cu"] = "// unrelated\n"
    sdist = _next_release(fake, files)
    out = fake.ok("rebase", "1.1", "--sdist", str(sdist))
    assert "dropped 0001-norm-scale-by-two.patch: Backport " + "3" * 40 in out
    series = [s for s in (fake.root / "patches/flashinfer/series").read_text().split() if s.endswith(".patch")]
    assert series == ["0001-norm-hook-the-fused-quant-header.patch"]
    assert len(list((fake.root / "patches/cutlass").glob("*.patch"))) == 1
    lock = json.loads((fake.root / "upstreams.lock.json").read_text())["targets"][0]
    assert lock["version"] == "1.1" and lock["revision"] == "3" * 40
    assert lock["sdist"]["sha256"] == hashlib.sha256(sdist.read_bytes()).hexdigest()
    tracking = (fake.root / "tracking.md").read_text()
    assert "`0001-norm-scale-by-two.patch`: Upstream-Status: Backport " + "3" * 40 in tracking
    (fake.root / ".cache/sdist" / sdist.name).write_bytes(sdist.read_bytes())
    fake.ok("check")


def test_rebase_stops_on_conflict_without_losing_work(fake: FakeProject) -> None:
    files = base_files()
    files["csrc/norm.cu"] = NORM.replace("line 10\n", "line 10 changed upstream\n")
    sdist = _next_release(fake, files)
    before = fake.snapshot()
    err = fake.fail("rebase", "1.1", "--sdist", str(sdist))
    assert "0001-norm-scale-by-two.patch" in err and "csrc/norm.cu" in err
    assert "am --continue" in err and "make rebase-continue" in err
    assert fake.snapshot() == before
    repo = fake.root / "build/rebase"
    (repo / "csrc/norm.cu").write_text(NORM.replace("line 10\n", "line 10 changed upstream x2\n"))
    run_git(repo, "add", "csrc/norm.cu")
    run_git(repo, "am", "--continue")
    out = fake.ok("rebase-continue")
    assert "rebased onto flashinfer 1.1" in out
    assert "line 10 changed upstream x2" in patch_file(fake, "flashinfer", 1).read_text()
    (fake.root / ".cache/sdist" / sdist.name).write_bytes(sdist.read_bytes())
    fake.ok("check")


def test_rebase_rewrites_pins_and_reference_lines(fake: FakeProject) -> None:
    files = base_files()
    files["csrc/norm.cu"] = "".join(f"// new upstream preamble {i}\n" for i in range(60)) + NORM
    sdist = _next_release(fake, files)
    out = fake.ok("rebase", "1.1", "--sdist", str(sdist))
    assert "tracking.md: pin block rewritten from the lock" in out
    tracking = (fake.root / "tracking.md").read_text()
    sha = hashlib.sha256(sdist.read_bytes()).hexdigest()
    assert f"- flashinfer 1.1: commit `{'3' * 40}`, PyPI sdist `{sdist.name}` (sha256 `{sha}`)" in tracking
    assert "1.0" not in tracking and FAKE_REVISION not in tracking
    assert "| `csrc/norm.cu` | ~65 |" in tracking  # upstream norm line 5 moved down by 60
    (fake.root / ".cache/sdist" / sdist.name).write_bytes(sdist.read_bytes())
    assert "pin blocks match the lock: tracking.md" in fake.ok("check")


def test_check_fails_on_a_stale_pin_block(fake: FakeProject) -> None:
    tracking = fake.root / "tracking.md"
    tracking.write_text(tracking.read_text().replace("flashinfer 1.0:", "flashinfer 0.9:"))
    assert "tracking.md: pin block differs from upstreams.lock.json" in fake.fail("check")
    tracking.write_text(TRACKING.format(rev=FAKE_REVISION[:12], crev="2" * 12).replace("<!-- /pins -->\n", ""))
    assert "pin block opened but not closed" in fake.fail("check")


def test_check_fails_on_a_far_reference_line(fake: FakeProject) -> None:
    tracking = fake.root / "tracking.md"
    tracking.write_text(tracking.read_text().replace("| ~5 |", "| ~500 |"))
    err = fake.fail("check")
    assert "snippet `upstream norm line 5` is at line 5, not near ~500" in err


def test_rebase_continue_commits_only_the_overlay(fake: FakeProject) -> None:
    """Bytecode or scratch files left in build/rebase while resolving never enter a commit."""
    files = base_files()
    files["csrc/norm.cu"] = NORM.replace("line 10\n", "line 10 changed upstream\n")
    sdist = _next_release(fake, files)
    fake.fail("rebase", "1.1", "--sdist", str(sdist))
    repo = fake.root / "build/rebase"
    (repo / "csrc/norm.cu").write_text(NORM.replace("line 10\n", "line 10 changed upstream x2\n"))
    (repo / "flashinfer/__pycache__").mkdir(parents=True)
    (repo / "flashinfer/__pycache__/norm.cpython-311.pyc").write_bytes(bytes(range(256)))
    (repo / "csrc/scratch.bin").write_bytes(b"\xff\xfe\x00 not utf-8")
    run_git(repo, "add", "csrc/norm.cu")
    run_git(repo, "am", "--continue")
    assert "rebased onto flashinfer 1.1" in fake.ok("rebase-continue")
    tree = fake.root / "build/tree"
    overlay = run_git(tree, "show", "--name-only", "--format=", "HEAD").stdout.split()
    assert overlay == ["include/flashinfer/norm_quant.cuh"]
    tracked = run_git(tree, "ls-files").stdout.split()
    assert "csrc/scratch.bin" not in tracked and not any("__pycache__" in f for f in tracked)
    assert sorted(p.name for p in (fake.root / "csrc_overrides").rglob("*") if p.is_file()) == ["norm_quant.cuh"]


def test_rebase_repins_the_submodule_gitlink(fake: FakeProject) -> None:
    root = fake.root
    (root / ".gitmodules").write_text('[submodule "flashinfer"]\n\tpath = flashinfer\n'
                                      '\turl = https://example.invalid/flashinfer\n\tbranch = v1.0\n')
    run_git(root, "init", "-q")
    run_git(root, "update-index", "--add", "--cacheinfo", f"160000,{FAKE_REVISION},flashinfer")
    sdist = _next_release(fake, base_files())
    out = fake.ok("rebase", "1.1", "--sdist", str(sdist))
    assert f"flashinfer: gitlink staged at {'3' * 40}, .gitmodules branch v1.1" in out
    assert run_git(root, "ls-files", "-s", "flashinfer").stdout.split()[:2] == ["160000", "3" * 40]
    assert "\tbranch = v1.1\n" in (root / ".gitmodules").read_text()


def test_bad_sdist_pin_fails_clearly(fake: FakeProject) -> None:
    lock_path = fake.root / "upstreams.lock.json"
    lock = json.loads(lock_path.read_text())
    lock["targets"][0]["sdist"]["sha256"] = "f" * 64
    lock_path.write_text(json.dumps(lock))
    err = fake.fail("upstream")
    assert "but the lock pins " + "f" * 64 in err and "Delete it" in err


def test_corrupt_cached_sdist_is_never_reused(fake: FakeProject) -> None:
    cached = fake.root / ".cache/sdist" / fake.sdist.name
    cached.write_bytes(cached.read_bytes()[:100])
    import shutil
    shutil.rmtree(fake.root / "build/upstream")
    err = fake.fail("upstream")
    assert "corrupt or not the pinned release" in err and f"rm {cached}" in err


def test_sdist_of_another_commit_is_rejected(fake: FakeProject) -> None:
    other = make_sdist(fake.sdist.parent / "..", "1.0", "4" * 40, base_files())
    lock_path = fake.root / "upstreams.lock.json"
    lock = json.loads(lock_path.read_text())
    lock["targets"][0]["sdist"]["sha256"] = hashlib.sha256(other.read_bytes()).hexdigest()
    lock_path.write_text(json.dumps(lock))
    err = fake.fail("upstream", "--sdist", str(other))
    assert "4" * 40 in err and FAKE_REVISION in err


def test_populated_submodule_is_preferred_and_checked(fake: FakeProject, tmp_path: Path) -> None:
    sub = fake.root / "flashinfer"
    for rel, text in base_files().items():
        (sub / rel).parent.mkdir(parents=True, exist_ok=True)
        (sub / rel).write_text(text)
    (sub / "flashinfer").mkdir(exist_ok=True)
    run_git(sub / "3rdparty/cutlass", "init", "-q")
    run_git(sub / "3rdparty/cutlass", "add", "-A")
    run_git(sub / "3rdparty/cutlass", "commit", "-qm", "cutlass")
    run_git(sub, "init", "-q")
    run_git(sub, "add", "csrc", "include")
    run_git(sub, "commit", "-qm", "flashinfer")
    err = fake.fail("upstream")
    assert "flashinfer is at" in err and "but the lock pins flashinfer at " + FAKE_REVISION in err


def _git_repo(path: Path, files: dict[str, str], message: str) -> str:
    for rel, text in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text)
    if not (path / ".git").exists():
        run_git(path, "init", "-q")
    run_git(path, "add", "-A")
    run_git(path, "commit", "-q", "-m", message)
    return run_git(path, "rev-parse", "HEAD").stdout.strip()


def test_rebase_from_submodule_drops_patch_by_patch_id(fake: FakeProject) -> None:
    files = base_files()
    sub = fake.root / "flashinfer"
    cutlass_rev = _git_repo(sub / "3rdparty/cutlass", {"include/cutlass/gemm.h": files.pop(
        "3rdparty/cutlass/include/cutlass/gemm.h")}, "cutlass")
    files["flashinfer/_build_meta.py"] = '__version__ = "1.0"\n'
    (sub / ".gitmodules").parent.mkdir(parents=True, exist_ok=True)
    (sub / ".gitmodules").write_text('[submodule "3rdparty/cutlass"]\n\tpath = 3rdparty/cutlass\n'
                                     '\turl = https://example.invalid/cutlass\n')
    base = _git_repo(sub, files, "release 1.0")
    lock_path = fake.root / "upstreams.lock.json"
    lock = json.loads(lock_path.read_text())
    lock["targets"][0]["revision"], lock["targets"][1]["revision"] = base, cutlass_rev
    lock_path.write_text(json.dumps(lock, indent=2) + "\n")
    assert "from submodule" in fake.ok("upstream")
    # upstream merges patch 0001 under its own message, then moves on
    merged = _git_repo(sub, {"csrc/norm.cu": NORM.replace("line 10\n", "line 10 x2\n")},
                       "norm: double line ten (upstream's own commit)")
    head = _git_repo(sub, {"csrc/other.cu": "// unrelated\n"}, "release 1.1")
    out = fake.ok("rebase", "1.1")
    assert f"dropped 0001-norm-scale-by-two.patch: Backport {merged}" in out
    pinned = json.loads(lock_path.read_text())["targets"]
    assert pinned[0]["revision"] == head and pinned[0]["version"] == "1.1"
    assert pinned[1]["revision"] == cutlass_rev
    assert f"Backport {merged}" in (fake.root / "tracking.md").read_text()


def test_sass_target_rule() -> None:
    """A module's cubins must be the requested target or its family cubin; plain sm_120 is not sm_121a."""
    from fiseries.cuda import sass_matches

    assert sass_matches({"sm_121a"}, {"sm_121a"})
    assert sass_matches({"sm_120f"}, {"sm_121a"})  # family-specific: runs on every 12.x with minor >= 0
    assert not sass_matches({"sm_120"}, {"sm_121a"})  # upstream #3294
    assert not sass_matches({"sm_120a"}, {"sm_121a"})
    assert not sass_matches({"sm_121f"}, {"sm_120a"})  # a 12.1 family cubin does not run on 12.0
    assert not sass_matches({"sm_121a", "sm_90a"}, {"sm_121a"})  # a stray target
    assert not sass_matches({"sm_100f"}, {"sm_121a"})
    assert sass_matches({"sm_121a", "sm_120a"}, {"sm_121a", "sm_120a"})
