"""Slice-to-volume registration: sections cut from phantoms along known poses are found again."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from locate_synthetic import (
    QUICK_PIXELS,
    blob_phantom,
    extract_section,
    grid_volume,
    random_pose,
)

from coframe.core.errors import DimensionError, RegistrationError
from coframe.registration.locate import locate_section, seed_count
from coframe.registration.locate_geometry import (
    GridImage,
    Pose,
    angle_between,
    fibonacci_cap,
    in_plane_maps,
    plane_basis,
    pose_errors,
    resample_grid,
)
from coframe.registration.locate_refine import RefineSettings, pose_score, refine_pose, tilt_margin
from coframe.registration.locate_result import LocateOptions, LocateResult
from coframe.transforms.affine import Affine

VOXEL = 1000.0
PIXEL = 500.0
#: The phantom tests' search (see ``locate_synthetic.QUICK_PIXELS``).
QUICK = LocateOptions(search_pixels=QUICK_PIXELS)
SECTION = (48, 56)


@pytest.fixture(scope="module")
def phantom() -> GridImage:
    """A 48^3 phantom of 1 µm voxels (lengths in nm)."""
    return blob_phantom((48, 48, 48), VOXEL, seed=3)


def _section(phantom: GridImage, seed: int, **kwargs: float) -> tuple[GridImage, Pose]:
    rng = np.random.default_rng(seed)
    size = (SECTION[0] * PIXEL, SECTION[1] * PIXEL)
    pose = random_pose(phantom, size, rng, margin=VOXEL, max_tilt=kwargs.pop("max_tilt", None))
    section = extract_section(
        phantom, pose, SECTION, PIXEL, rng=rng, blur=1.0, noise=0.3, invert=True
    )
    return section, pose


def _errors(found: Affine, truth: Pose, section: GridImage) -> dict[str, float]:
    return pose_errors(found, Affine(truth.matrix), section.center, VOXEL)


def test_fibonacci_cap_spreads_normals_within_the_cap() -> None:
    axis = np.array([0.0, 0.6, 0.8])
    normals = fibonacci_cap(axis, 30.0, 5.0)
    assert np.allclose(normals[0], axis)
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0)
    angles = np.degrees(np.arccos(np.clip(normals @ axis, -1, 1)))
    assert angles.max() <= 30.0 + 1e-6
    # every direction of the cap is within about one spacing of a sample
    probe = fibonacci_cap(axis, 29.0, 1.0)
    nearest = np.degrees(np.arccos(np.clip(probe @ normals.T, -1, 1))).min(axis=1)
    assert nearest.max() < 5.0


def test_a_cone_of_normals_gets_its_share_of_the_seeds() -> None:
    opts = LocateOptions(seeds=256, angle_step=15.0)
    whole = len(fibonacci_cap(np.array([1.0, 0.0, 0.0]), 90.0, 15.0))
    assert seed_count(opts, whole) == 256  # every orientation: all of them
    half = seed_count(opts, whole // 2)
    assert 120 <= half <= 136  # by normals scanned
    assert seed_count(opts, 8) == 64  # a 20 degree cone: never under a quarter
    assert seed_count(replace(opts, seeds=3), 1) == 1


def test_plane_basis_and_in_plane_maps_are_right_handed() -> None:
    for normal in ([1.0, 0.0, 0.0], [0.2, -0.9, 0.4]):
        e1, e2 = plane_basis(normal)
        n = np.asarray(normal) / np.linalg.norm(normal)
        assert np.allclose(np.cross(e1, e2), n)
    maps = in_plane_maps([0.0, 90.0], mirror=True)
    assert np.allclose(np.linalg.det(maps), -1.0)
    assert np.allclose(in_plane_maps([90.0], mirror=False)[0] @ [1.0, 0.0], [0.0, 1.0])


def _record_rounds(patch: pytest.MonkeyPatch, rounds: list[tuple[str, ...]]) -> None:
    """Append the scores of every global round that ``locate_section`` runs to ``rounds``."""
    import coframe.registration.locate as locate_module

    scan = locate_module._global_stage

    def recorded(*args, **kwargs):
        rounds.append(args[4])
        return scan(*args, **kwargs)

    patch.setattr(locate_module, "_global_stage", recorded)


#: A located section, its truth, the result and the scores of each global round.
Located = tuple[GridImage, Pose | None, LocateResult, list[tuple[str, ...]]]


def _located(phantom: GridImage, section: GridImage, truth: Pose | None) -> Located:
    rounds: list[tuple[str, ...]] = []
    with pytest.MonkeyPatch.context() as patch:
        _record_rounds(patch, rounds)
        result = locate_section(grid_volume(section), grid_volume(phantom), QUICK)
    return section, truth, result, rounds


@pytest.fixture(scope="module")
def oblique_located(phantom: GridImage) -> Located:
    """An inverted, noisy oblique section of the phantom, located (shared by two tests)."""
    return _located(phantom, *_section(phantom, seed=1))


@pytest.fixture(scope="module")
def noise_located(phantom: GridImage) -> Located:
    """A section of pure noise, located in the phantom (shared by two tests)."""
    noise = GridImage(
        np.random.default_rng(0).standard_normal(SECTION).astype(np.float32),
        (PIXEL, PIXEL),
        (PIXEL / 2, PIXEL / 2),
    )
    return _located(phantom, noise, None)


@pytest.mark.slow
def test_locate_finds_an_inverted_noisy_oblique_section(oblique_located: Located) -> None:
    section, truth, result, _ = oblique_located
    err = _errors(result.affine, truth, section)
    assert err["normal_deg"] <= 2.0, err
    assert err["offset_voxels"] <= 1.0, err
    assert err["in_plane"] <= 1.5 * VOXEL, err
    assert err["in_plane_deg"] <= 2.0, err
    assert result.trustworthy
    assert result.ncc < -0.8  # inverted contrast is recognised as such
    assert result.affine.input_dim == 2 and result.affine.output_dim == 3
    assert result.confidence > 0.1
    # the global candidates were screened at a finer spacing before the local search
    assert result.spacings["working"] <= result.spacings["screen"] < result.spacings["global"]
    # an asymmetric volume has no mirror twin to rival the pose
    assert result.symmetry == () and result.mirror is None and not result.mirror_tie


@pytest.mark.slow
def test_priors_restrict_the_search_and_still_find_the_pose(phantom: GridImage) -> None:
    section, truth = _section(phantom, seed=4, max_tilt=25.0)
    centre = truth.apply(section.center)[0]
    options = replace(
        QUICK,
        normal=(1.0, 0.0, 0.0),
        max_tilt=30.0,
        near=tuple(centre + 2 * VOXEL),
    )
    result = locate_section(grid_volume(section), grid_volume(phantom), options)
    err = _errors(result.affine, truth, section)
    assert err["normal_deg"] <= 2.0 and err["offset_voxels"] <= 1.0, err
    tilt = angle_between(result.normal, np.array([1.0, 0.0, 0.0]))
    assert min(tilt, 180.0 - tilt) <= 30.0 + 1e-6


@pytest.mark.slow
def test_shrinkage_recovers_an_anisotropic_in_plane_scale(phantom: GridImage) -> None:
    rng = np.random.default_rng(7)
    size = (SECTION[0] * PIXEL, SECTION[1] * PIXEL)
    rigid = random_pose(phantom, size, rng, margin=2 * VOXEL, max_tilt=30.0)
    # the section shrank by 8 % along its y axis: section lengths are 0.92 of the volume's
    shrunk = Pose(rigid.center, rigid.linear @ np.diag([1 / 0.92, 1.0]), rigid.section_center)
    section = extract_section(phantom, shrunk, SECTION, PIXEL, rng=rng, blur=1.0, noise=0.2)
    result = locate_section(
        grid_volume(section), grid_volume(phantom), replace(QUICK, shrinkage=True)
    )
    scales = np.linalg.norm(result.pose.linear, axis=0)
    assert abs(scales[0] - 1 / 0.92) < 0.03, scales
    assert abs(scales[1] - 1.0) < 0.03, scales
    err = _errors(result.affine, shrunk, section)
    assert err["normal_deg"] <= 2.0 and err["offset_voxels"] <= 1.0, err


def test_refinement_converges_from_a_nearby_pose(phantom: GridImage) -> None:
    section, truth = _section(phantom, seed=2)
    work = resample_grid(section, VOXEL)
    angle = np.deg2rad(5.0)
    tilt = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    start = Pose(
        truth.apply(work.center)[0] + np.array([600.0, -500.0, 400.0]),
        tilt @ truth.linear,
        work.center,
    )
    refined, _ = refine_pose(phantom, work, start, RefineSettings(kind="rigid"))
    before = _errors(Affine(start.matrix), truth, work)
    after = _errors(Affine(refined.matrix), truth, work)
    assert after["normal_deg"] < 1.0 < before["normal_deg"]
    assert after["center"] < 0.3 * VOXEL < before["center"]
    assert pose_score(phantom, refined, work)[0] > pose_score(phantom, start, work)[0]


def test_a_correlation_refinement_that_leads_away_is_redone_by_mutual_information(
    phantom: GridImage, monkeypatch: pytest.MonkeyPatch
) -> None:
    import coframe.registration.locate as locate_module
    from coframe.registration.locate_inputs import VolumeReader
    from coframe.registration.locate_result import ScoredPose

    section, truth = _section(phantom, seed=2)  # inverted contrast: it correlates
    work = resample_grid(section, VOXEL)
    start = Pose(
        truth.apply(work.center)[0] + np.array([0.0, 700.0, 0.0]), truth.linear, work.center
    )
    volume = grid_volume(phantom)
    score, sign = pose_score(phantom, start, work, metric="mi")
    item = ScoredPose(start, score, sign, refined=False)
    real = locate_module.refine_pose
    used = []

    def astray(crop, sec, pose, settings):  # correlation runs off 6 voxels, as it can
        used.append(settings.metric)
        if settings.metric == "correlation":
            return Pose(
                pose.center + np.array([6000.0, 0.0, 0.0]), pose.linear, pose.section_center
            ), 0.0
        return real(crop, sec, pose, settings)

    monkeypatch.setattr(locate_module, "refine_pose", astray)
    out = locate_module._refine_one(VolumeReader(volume), 0, work, item, 4000.0, QUICK)
    assert used == ["correlation", "mattes"]
    assert out.refined and out.score > score
    err = _errors(Affine(out.pose.matrix), truth, work)
    assert err["offset_voxels"] < 0.5 and err["in_plane"] < 500.0, err
    # when correlation does not lead away, mutual information is not run
    used.clear()
    monkeypatch.setattr(
        locate_module, "refine_pose", lambda *a: (used.append(a[3].metric), real(*a))[1]
    )
    locate_module._refine_one(VolumeReader(volume), 0, work, item, 4000.0, QUICK)
    assert used == ["correlation"]


def test_tilt_margin_is_positive_at_the_truth_and_negative_off_tilt(phantom: GridImage) -> None:
    section, truth = _section(phantom, seed=2)
    work = resample_grid(section, VOXEL)
    at_truth = Pose(truth.apply(work.center)[0], truth.linear, work.center)
    assert tilt_margin(phantom, at_truth, work, degrees=4.0) > 0.01
    # tilted 6 degrees about an in-plane axis: tilting back scores higher
    a = at_truth.linear[:, 0] / np.linalg.norm(at_truth.linear[:, 0])
    cross = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    angle = np.deg2rad(6.0)
    rotation = np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * (cross @ cross)
    off = Pose(at_truth.center, rotation @ at_truth.linear, work.center)
    assert tilt_margin(phantom, off, work, degrees=4.0) < 0.0


@pytest.mark.slow
def test_a_section_of_noise_is_not_trustworthy(noise_located: Located) -> None:
    _, _, result, _ = noise_located
    assert not result.trustworthy
    # the best pose the refinement finds for noise still matches no slice
    assert abs(result.ncc) < 0.45 and result.edges < result.options.min_edges


@pytest.mark.slow
def test_correlation_is_scanned_only_where_edges_leave_doubt(
    oblique_located: Located, noise_located: Located
) -> None:
    """``auto``: a trusted pose from edges ends the search; an untrusted one adds NCC's seeds."""
    _, _, result, rounds = oblique_located
    assert result.trustworthy and rounds == [("edges",)]
    _, _, result, rounds = noise_located
    assert not result.trustworthy and rounds == [("edges",), ("ncc",)]
    # both rounds' refined poses compete: the candidates hold more than one round's
    assert len(result.candidates) > QUICK.refine


def test_a_3d_section_is_refused(phantom: GridImage) -> None:
    with pytest.raises(DimensionError, match="'fib'.*2D section"):
        locate_section(grid_volume(phantom), grid_volume(phantom), section_name="fib")


def test_a_2d_volume_is_refused(phantom: GridImage) -> None:
    section, _ = _section(phantom, seed=1)
    with pytest.raises(DimensionError, match="'tem'.*3D volume"):
        locate_section(grid_volume(section), grid_volume(section), volume_name="tem")


def test_a_section_larger_than_the_volume_is_refused(phantom: GridImage) -> None:
    big = GridImage(np.zeros((40, 40), np.float32), (2000.0, 2000.0), (0.0, 0.0))
    with pytest.raises(DimensionError, match="larger|smaller than the volume"):
        locate_section(grid_volume(big), grid_volume(phantom), section_name="big")


def test_a_near_point_outside_the_volume_is_refused(phantom: GridImage) -> None:
    section, _ = _section(phantom, seed=1)
    options = LocateOptions(near=(1e6, 1e6, 1e6))
    with pytest.raises(RegistrationError, match="--near"):
        locate_section(grid_volume(section), grid_volume(phantom), options)


def test_pose_errors_measure_tilt_offset_and_shift() -> None:
    truth = Affine(np.array([[0.0, 0.0, 5.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    c, s = np.cos(np.deg2rad(3.0)), np.sin(np.deg2rad(3.0))
    tilted = Affine(np.array([[s, 0.0, 7.0], [c, 0.0, 4.0], [0.0, 1.0, 0.0]]))
    err = pose_errors(tilted, truth, (0.0, 0.0), voxel=2.0)
    assert err["normal_deg"] == pytest.approx(3.0)
    assert err["offset"] == pytest.approx(2.0) and err["offset_voxels"] == pytest.approx(1.0)
    assert err["in_plane"] == pytest.approx(4.0)


def test_the_scan_gives_the_same_scores_on_any_number_of_threads_and_alone(
    phantom: GridImage, monkeypatch: pytest.MonkeyPatch
) -> None:
    from coframe.registration import locate_search

    section, _ = _section(phantom, 5)
    coarse = resample_grid(section, 2 * VOXEL)
    bar = np.ones(coarse.shape, bool)
    bar[:, 4:7] = False  # a grid bar: every in-plane map gets a footprint of its own
    coarse = GridImage(coarse.array, coarse.spacing, coarse.origin, bar)
    volume = resample_grid(phantom, 2 * VOXEL)
    normals = fibonacci_cap((1.0, 0.0, 0.0), 40.0, 12.0)
    maps = in_plane_maps(np.arange(0.0, 360.0, 30.0), mirror=False)
    runs = []
    for threads in (1, 3):
        monkeypatch.setattr(locate_search, "threads_for", lambda tasks, t=threads: min(t, tasks))
        got, bases = locate_search.scan(volume, coarse, normals, maps, scores=("edges", "ncc"))
        runs.append((got, bases))
    (one, one_bases), (many, many_bases) = runs
    assert len(normals) > 3
    for kind in ("edges", "ncc"):
        assert one[kind].scores.any()
        assert np.array_equal(one[kind].scores, many[kind].scores)
        assert np.array_equal(one[kind].signs, many[kind].signs)
        assert np.array_equal(one[kind].centres, many[kind].centres)
    assert all(
        np.array_equal(a, c) and np.array_equal(b, d)
        for (a, b), (c, d) in zip(one_bases, many_bases, strict=True)
    )
    # the footprint overlaps both scores share give each the scores it has alone
    for kind in ("edges", "ncc"):
        alone, _ = locate_search.scan(volume, coarse, normals, maps, scores=(kind,))
        assert np.array_equal(alone[kind].scores, one[kind].scores)


@pytest.mark.parametrize("shape", [(20, 17), (32, 30), (9, 8)])
def test_the_cropped_correlation_is_the_corner_of_the_full_one(shape: tuple[int, int]) -> None:
    import scipy.fft as sfft

    from coframe.registration.locate_scores import _correlate

    rng = np.random.default_rng(shape[0])
    fa = sfft.rfft2(rng.normal(size=(3, *shape)))
    fb = sfft.rfft2(rng.normal(size=shape))[None]
    full = sfft.irfft2(fa * np.conj(fb), s=shape)
    for valid in [(5, 4), shape, (1, 1)]:
        got = _correlate(fa, fb, shape, valid)
        assert got.shape == (3, *valid)
        assert np.allclose(got, full[:, : valid[0], : valid[1]])


def _reference_candidates(result, normals, bases, maps, centre, count, max_angle, max_shift):
    """best_candidates' choice, made the plain way: pose by pose with poses_distinct."""
    from coframe.registration.locate_geometry import poses_distinct
    from coframe.registration.locate_search import pose_of

    n_norm, n_map, n_d = result.scores.shape
    flat = result.scores.reshape(n_norm * n_map, n_d)
    top = np.argsort(-flat, axis=1)[:, :3]
    cells = np.repeat(np.arange(n_norm * n_map), top.shape[1])
    ds = top.ravel()
    scores = flat[cells, ds]
    chosen = []
    for j in np.argsort(-scores, kind="stable"):
        if scores[j] <= 0 or len(chosen) >= count:
            break
        i, g = divmod(int(cells[j]), n_map)
        pose = pose_of(normals[i], bases[i], maps[g], result.centres[i, g, ds[j]], centre)
        if all(poses_distinct(pose, c, max_angle=max_angle, max_shift=max_shift) for c in chosen):
            chosen.append(pose)
    return chosen


def test_the_candidates_taken_are_those_poses_distinct_picks(phantom: GridImage) -> None:
    from coframe.registration.locate_search import best_candidates, scan

    section, _ = _section(phantom, 8)
    coarse = resample_grid(section, 3 * VOXEL)
    volume = resample_grid(phantom, 3 * VOXEL)
    normals = fibonacci_cap((1.0, 0.0, 0.0), 90.0, 20.0)
    maps = in_plane_maps(np.arange(0.0, 360.0, 20.0), mirror=True)
    got, bases = scan(volume, coarse, normals, maps)
    for count, angle, shift in ((40, 15.0, 6 * VOXEL), (300, 30.0, 12 * VOXEL)):
        fast = best_candidates(
            got["edges"],
            normals,
            bases,
            maps,
            coarse.center,
            count=count,
            max_angle=angle,
            max_shift=shift,
        )
        plain = _reference_candidates(
            got["edges"], normals, bases, maps, coarse.center, count, angle, shift
        )
        assert len(fast) == len(plain) > 10
        for a, b in zip(fast, plain, strict=True):
            assert np.array_equal(a.pose.matrix, b.matrix)


def test_rescoring_puts_a_coarse_candidate_back_on_its_pose(phantom: GridImage) -> None:
    """A candidate a coarse step off its pose is moved back onto it at the finer spacing,
    and scores above a wrong place."""
    from coframe.registration.locate_search import Candidate, rescore

    section, truth = _section(phantom, 6)
    fine = resample_grid(section, 1.5 * VOXEL)
    volume = resample_grid(phantom, 1.5 * VOXEL)
    off = truth.center + 2.4 * VOXEL * truth.normal + 1.8 * VOXEL * truth.linear[:, 0]
    near = Pose(off, truth.linear, fine.center)
    wrong_linear = np.column_stack([truth.linear[:, 1], truth.linear[:, 0]])  # a mirrored twin
    wrong = Pose(truth.center + 6 * VOXEL * truth.linear[:, 1], wrong_linear, fine.center)
    got = rescore(
        volume,
        fine,
        [Candidate(wrong, 0.9, 1.0), Candidate(near, 0.5, 1.0)],
        half_d=3 * VOXEL,
        half_u=3 * VOXEL,
    )
    assert len(got) == 2
    best = got[0]
    assert np.allclose(best.pose.linear, truth.linear, atol=1e-9)
    assert np.linalg.norm(best.pose.center - truth.center) <= 1.5 * VOXEL
    assert best.score > got[1].score
