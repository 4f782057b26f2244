"""Videos and their object tracks in the metadata store (tables ``videos``, ``tracks``,
``track_frames``; see :mod:`regionsearch.store.schema` for how tracks share the region id space).
A mixin of :class:`~regionsearch.store.metadata.MetadataStore` (it uses its ``engine``,
``revision`` and ``_writable``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, delete, exists, func, insert, select
from sqlalchemy.engine import Connection

from ..errors import NotFoundError
from ..masks import counts_str
from ..types import RegionRecord, TrackFrameRecord, TrackInfo, VideoResult
from .facts import _chunks
from .schema import embeddings, images, regions, track_frames, tracks, videos

#: schema revisions without the video tables (a reader may open such a store; it has no videos)
_BEFORE_VIDEOS = ("0001", "0002")

_TRACK_COLS = (tracks.c.region_id.label("track_region_id"), tracks.c.frame_start, tracks.c.frame_end,
               tracks.c.t_start, tracks.c.t_end, tracks.c.best_frame, tracks.c.best_t,
               videos.c.fps.label("video_fps"), videos.c.duration_s.label("video_duration_s"))


def region_columns(with_tracks: bool) -> tuple[Any, ...]:
    """Columns of a region joined with its image (and its track and video when ``with_tracks``)."""
    cols = (regions.c.id, regions.c.image_id, images.c.path, regions.c.x, regions.c.y, regions.c.w,
            regions.c.h, regions.c.area, regions.c.rle_counts, regions.c.rle_h, regions.c.rle_w,
            regions.c.predicted_iou, regions.c.stability_score, regions.c.kind, images.c.width,
            images.c.height)
    return cols + _TRACK_COLS if with_tracks else cols


def region_from(cols: tuple[Any, ...], with_tracks: bool) -> Any:
    """``SELECT cols FROM regions JOIN images [LEFT JOIN tracks LEFT JOIN videos]``."""
    j = regions.join(images, images.c.id == regions.c.image_id)
    if with_tracks:
        j = j.outerjoin(tracks, tracks.c.region_id == regions.c.id).outerjoin(
            videos, videos.c.image_id == tracks.c.video_id)
    return select(*cols).select_from(j)


def region_row(r: Any) -> RegionRecord:
    """A :class:`RegionRecord` from a row of :func:`region_columns` (kind ``track`` with its
    :class:`TrackInfo` when the row has a track)."""
    m = r._mapping
    track = None
    if m.get("track_region_id") is not None:
        track = TrackInfo(video_id=int(r.image_id), video_path=r.path, fps=float(m["video_fps"] or 0.0),
                          duration_s=m["video_duration_s"], frame_start=int(r.frame_start),
                          frame_end=int(r.frame_end), t_start=float(r.t_start), t_end=float(r.t_end),
                          best_frame=int(r.best_frame), best_t=float(r.best_t))
    return RegionRecord(region_id=int(r.id), image_id=int(r.image_id), image_path=r.path,
                        bbox=(float(r.x), float(r.y), float(r.w), float(r.h)), area=int(r.area),
                        rle={"size": [int(r.rle_h), int(r.rle_w)], "counts": r.rle_counts},
                        predicted_iou=r.predicted_iou, stability_score=r.stability_score,
                        kind="track" if track is not None else r.kind, image_width=r.width,
                        image_height=r.height, track=track)


def _frame_values(region_id: int, f: Any) -> dict[str, Any]:
    x, y, w, h = (float(v) for v in f.bbox)
    rh, rw = (int(v) for v in f.rle["size"])
    return dict(region_id=region_id, frame=int(f.index), t=float(f.t), x=x, y=y, w=w, h=h, area=int(f.area),
                rle_counts=counts_str(f.rle["counts"]), rle_h=rh, rle_w=rw,
                score=None if f.score is None else float(f.score))


def _frame_record(f: Any) -> TrackFrameRecord:
    return TrackFrameRecord(frame=int(f["frame"]), t=float(f["t"]), bbox=(f["x"], f["y"], f["w"], f["h"]),
                            rle={"size": [int(f["rle_h"]), int(f["rle_w"])], "counts": f["rle_counts"]},
                            area=int(f["area"]), score=f["score"])


class VideoStoreMixin:
    engine: Any
    revision: str | None

    @property
    def has_video_tables(self) -> bool:
        return self.revision not in _BEFORE_VIDEOS

    # ------------------------------------------------------------------ writes
    def _write_videos(self, conn: Connection, image_ids: Sequence[int], results: Sequence[Any],
                      region_ids: Sequence[int]) -> None:
        """The ``videos``/``tracks``/``track_frames`` rows of the :class:`VideoResult` items of a
        batch (``region_ids``: the new region rows of all ``results``, concatenated in order)."""
        pos, vids, trks, frames = 0, [], [], []
        for iid, res in zip(image_ids, results):
            n = len(res.regions)
            if isinstance(res, VideoResult):
                vids.append(dict(image_id=iid, fps=float(res.fps), duration_s=res.duration_s,
                                 n_frames=res.n_frames, sample_fps=float(res.sample_fps),
                                 rotation=int(res.rotation), codec=str(res.codec)[:32]))
                for rid, t in zip(region_ids[pos:pos + n], res.stored_tracks):
                    best = t.best_frame
                    trks.append(dict(region_id=int(rid), video_id=iid, frame_start=t.frame_start,
                                     frame_end=t.frame_end, t_start=float(t.t_start), t_end=float(t.t_end),
                                     best_frame=int(best.index), best_t=float(best.t), n_frames=len(t.frames)))
                    frames += [_frame_values(int(rid), f) for f in t.frames]
            pos += n
        for table, rows in ((videos, vids), (tracks, trks), (track_frames, frames)):
            for chunk in _chunks(rows, 2_000):
                conn.execute(insert(table), list(chunk))

    def _delete_video_rows(self, conn: Connection, image_ids: Sequence[int], region_ids: Sequence[int]) -> None:
        """Explicit deletes of the video rows of images/regions being deleted (like the others:
        correct without ON DELETE CASCADE)."""
        if not self.has_video_tables:
            return
        for chunk in _chunks(list(region_ids)):
            conn.execute(delete(track_frames).where(track_frames.c.region_id.in_(chunk)))
            conn.execute(delete(tracks).where(tracks.c.region_id.in_(chunk)))
        for chunk in _chunks(list(image_ids)):
            conn.execute(delete(videos).where(videos.c.image_id.in_(chunk)))

    # ------------------------------------------------------------------ reads
    def _regions_select(self, *extra: Any) -> Any:
        """Regions joined with their image (and track and video, where the schema has them)."""
        return region_from(region_columns(self.has_video_tables) + extra, self.has_video_tables)

    def regions_without_embeddings(self) -> list[tuple[int, int]]:
        """(region id, image id) of regions (image regions and tracks) that have no stored embedding."""
        q = (select(regions.c.id, regions.c.image_id)
             .outerjoin(embeddings, embeddings.c.region_id == regions.c.id)
             .where(embeddings.c.region_id.is_(None)))
        with self.engine.connect() as conn:
            return [(int(a), int(b)) for a, b in conn.execute(q)]

    def indexed_images_without_regions(self) -> list[int]:
        """Indexed images without a region (a video without tracks is not one: it may show none)."""
        q = (select(images.c.id).outerjoin(regions, regions.c.image_id == images.c.id)
             .where(and_(images.c.status == "indexed", regions.c.id.is_(None))))
        if self.has_video_tables:
            q = q.where(~exists(select(videos.c.image_id).where(videos.c.image_id == images.c.id)))
        with self.engine.connect() as conn:
            return [int(i) for i in conn.execute(q).scalars()]

    def get_track(self, region_id: int) -> tuple[RegionRecord, list[TrackFrameRecord]]:
        """A track (its region record, kind ``track``) and every stored frame, by frame number;
        :class:`NotFoundError` when ``region_id`` is not a track."""
        rec = None
        if self.has_video_tables:
            with self.engine.connect() as conn:
                row = conn.execute(region_from(region_columns(True), True)
                                   .where(regions.c.id == int(region_id))).first()
                rec = None if row is None else region_row(row)
                if rec is not None and rec.track is not None:
                    q = select(track_frames).where(track_frames.c.region_id == int(region_id)).order_by(
                        track_frames.c.frame)
                    frames = [_frame_record(f._mapping) for f in conn.execute(q)]
                    return rec, frames
        what = "a region of an image, not a track" if rec is not None else "not in this data dir"
        raise NotFoundError(f"no track with id {region_id}: it is {what}")

    def video_info(self, image_id: int) -> dict[str, Any] | None:
        """The ``videos`` row of an images row as a dict (None: not a video)."""
        if not self.has_video_tables:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(select(videos).where(videos.c.image_id == int(image_id))).first()
        return None if row is None else dict(row._mapping)

    def get_video(self, image_id: int) -> Any:
        """An indexed video's row (``path``, ``sha256``, ``width``, ``height`` and the ``videos``
        columns; attribute access), or None when ``image_id`` is not an indexed video."""
        if not self.has_video_tables:
            return None
        q = (select(images.c.id, images.c.path, images.c.sha256, images.c.width, images.c.height, videos.c.fps,
                    videos.c.duration_s, videos.c.n_frames)
             .select_from(images.join(videos, videos.c.image_id == images.c.id))
             .where(images.c.id == int(image_id), images.c.status == "indexed"))
        with self.engine.connect() as conn:
            return conn.execute(q).first()

    def video_counts(self) -> dict[str, int]:
        """``videos_indexed``, ``tracks`` and ``track_frames`` (zeros on an older schema)."""
        if not self.has_video_tables:
            return {"videos_indexed": 0, "tracks": 0, "track_frames": 0}
        with self.engine.connect() as conn:
            n = [int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                 for t in (videos, tracks, track_frames)]
        return {"videos_indexed": n[0], "tracks": n[1], "track_frames": n[2]}

    def video_image_ids(self, image_ids: Sequence[int]) -> set[int]:
        """Which of ``image_ids`` are videos."""
        if not self.has_video_tables:
            return set()
        out: set[int] = set()
        with self.engine.connect() as conn:
            for chunk in _chunks([int(i) for i in image_ids]):
                out |= {int(i) for i in conn.execute(select(videos.c.image_id)
                                                      .where(videos.c.image_id.in_(chunk))).scalars()}
        return out

    def tracks_without_frames(self) -> list[int]:
        """Track ids with no stored frame (doctor: a track must say where it is)."""
        if not self.has_video_tables:
            return []
        q = (select(tracks.c.region_id).outerjoin(track_frames, track_frames.c.region_id == tracks.c.region_id)
             .where(track_frames.c.region_id.is_(None)))
        with self.engine.connect() as conn:
            return [int(i) for i in conn.execute(q).scalars()]
