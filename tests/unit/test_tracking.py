"""Face tracks (engines/pipeline/tracking.py): association across frames, a face that leaves and
returns after `lost_s` gets a new id, two faces crossing keep theirs, `max_tracks` keeps the
largest and counts the rest, `min_size` ignores small faces."""
from __future__ import annotations

import numpy as np

from engines.pipeline.preprocess import Face
from engines.pipeline.tracking import FaceTracker, TrackingSpec, iou_matrix, select_faces

FPS = 8.0


def face(x: float, y: float, side: float = 60.0) -> Face:
    return Face(box=np.array([x, y, x + side, y + side]), landmarks=np.zeros((5, 2)))


def ids_by_x(update) -> list[int]:
    """Track ids of a frame's faces, left to right."""
    return [track_id for track_id, f in sorted(update.assigned, key=lambda a: a[1].box[0])]


def test_iou_matrix():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [100, 100, 110, 110]])
    m = iou_matrix(a, b)
    assert m.shape == (2, 3)
    np.testing.assert_allclose(m[0], [1.0, 50 / 150, 0.0])
    assert not m[1].any()


def test_faces_keep_their_ids_while_they_move():
    tracker = FaceTracker(TrackingSpec())
    first = tracker.update([face(10, 10), face(300, 20)], 0.0)
    assert sorted(first.started) == ids_by_x(first) == [1, 2]
    for k in range(1, 40):  # both drift right by 4 px per frame, in the order MTCNN happens to give
        faces = [face(10 + 4 * k, 10), face(300 + 4 * k, 20)]
        update = tracker.update(faces[::-1] if k % 2 else faces, k / FPS)
        assert ids_by_x(update) == [1, 2] and not update.started and not update.ended
    assert tracker.live[1].frames == 40 and tracker.live[1].first_seen == 0.0


def test_a_face_gone_longer_than_lost_s_ends_and_returns_with_a_new_id():
    tracker = FaceTracker(TrackingSpec(lost_s=1.0))
    tracker.update([face(50, 50)], 0.0)
    assert not tracker.update([], 0.5).ended  # a short occlusion keeps the track
    back = tracker.update([face(52, 50)], 0.9)
    assert ids_by_x(back) == [1]
    assert not tracker.update([], 1.5).ended
    gone = tracker.update([], 2.0)
    assert [t.id for t in gone.ended] == [1] and gone.ended[0].last_seen == 0.9
    returned = tracker.update([face(50, 50)], 2.2)
    assert returned.started == [2] and ids_by_x(returned) == [2]


def test_two_faces_crossing_keep_their_ids():
    """One face walks right, the other left, through each other: the constant-velocity
    prediction pairs each with its own continuation, not the nearer box."""
    tracker = FaceTracker(TrackingSpec())
    update = tracker.update([face(0, 40), face(400, 40)], 0.0)
    left_to_right = ids_by_x(update)
    a, b = left_to_right
    for k in range(1, 41):
        update = tracker.update([face(10 * k, 40), face(400 - 10 * k, 40)], k / FPS)
        by_id = {track_id: f.box[0] for track_id, f in update.assigned}
        assert by_id[a] == 10 * k and by_id[b] == 400 - 10 * k, k
    assert ids_by_x(update) == [b, a]  # they crossed
    assert not update.started


def test_max_tracks_keeps_the_largest_and_counts_the_rest():
    tracker = FaceTracker(TrackingSpec(max_tracks=2))
    faces = [face(0, 0, 40), face(100, 0, 80), face(300, 0, 60), face(500, 0, 50)]
    update = tracker.update(faces, 0.0)
    assert update.dropped == 2
    sides = [f.box[2] - f.box[0] for _, f in update.assigned]
    assert sides == [80, 60]  # largest first
    assert len(tracker.live) == 2


def test_min_size_ignores_small_faces_without_counting_them_dropped():
    chosen, dropped = select_faces([face(0, 0, 20), face(100, 0, 50)], TrackingSpec(min_size=30))
    assert [f.box[0] for f in chosen] == [100] and dropped == 0


def test_end_all_ends_every_live_track():
    tracker = FaceTracker(TrackingSpec(), first_id=7)
    tracker.update([face(0, 0), face(200, 0)], 0.0)
    assert sorted(t.id for t in tracker.end_all()) == [7, 8] and not tracker.live
