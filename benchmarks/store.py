"""Which format should a store that other tools read be? Zarr v3 vs Parquet vs today's .npy.

Writes one ``(rows, dim)`` float32 feature array (default 100,000 x 2,048: 800 MB) in
each format, side by side in one run, from 2 writer processes (each writes half the rows,
as two ranks would), then measures:

- write throughput (MB/s, both writers together, wall clock),
- random-row read latency (median and p95 of 200 single-row reads, fresh reader),
- whether the file can be memory-mapped (zero-copy rows),
- file count and total size.

Formats: ``npy`` (today's store: one shard per writer, merged into ``data/x.npy``, the
merge counted in the write time), ``zarr`` (v3, one array, chunks of 1,024 rows, no
compression and zstd), ``parquet`` (one ``FixedSizeList<float32>`` column, one file per
writer, row groups of 8,192 rows, uncompressed and snappy).

Run: ``python benchmarks/store.py [--rows 100000] [--dim 2048] [--dir /tmp/x]``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

CHUNK = 1024
GROUP = 8192


def _block(lo: int, hi: int, dim: int) -> np.ndarray:
    rng = np.random.default_rng(lo)
    return rng.standard_normal((hi - lo, dim), dtype=np.float32)


def _write_npy(root: Path, w: int, lo: int, hi: int, dim: int) -> None:
    step = 8192
    for a in range(lo, hi, step):
        np.save(root / f"shard-{w}-{a:09d}.npy", _block(a, min(hi, a + step), dim))


def _merge_npy(root: Path, rows: int, dim: int) -> None:
    out = np.lib.format.open_memmap(root / "x.npy", "w+", np.float32, (rows, dim))
    for p in sorted(root.glob("shard-*.npy")):
        a = int(p.stem.split("-")[2])
        arr = np.load(p)
        out[a : a + arr.shape[0]] = arr
        p.unlink()
    out.flush()
    del out


def _write_zarr(root: Path, w: int, lo: int, hi: int, dim: int, codec: str) -> None:
    import zarr

    arr = zarr.open_array(root / "x.zarr", mode="r+")
    step = CHUNK * 8
    for a in range(lo, hi, step):
        arr[a : min(hi, a + step)] = _block(a, min(hi, a + step), dim)


def _make_zarr(root: Path, rows: int, dim: int, codec: str) -> None:
    import zarr

    comp = None if codec == "none" else zarr.codecs.ZstdCodec(level=1)
    zarr.create_array(
        root / "x.zarr", shape=(rows, dim), chunks=(CHUNK, dim), dtype="float32",
        compressors=comp, dimension_names=["sample", "feature"],
    )  # fmt: skip


def _write_parquet(root: Path, w: int, lo: int, hi: int, dim: int, codec: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("index", pa.int64()), ("x", pa.list_(pa.float32(), dim))])
    with pq.ParquetWriter(root / f"part-{w}.parquet", schema, compression=codec) as writer:
        for a in range(lo, hi, GROUP):
            b = min(hi, a + GROUP)
            flat = pa.array(_block(a, b, dim).reshape(-1))
            col = pa.FixedSizeListArray.from_arrays(flat, dim)
            writer.write_table(pa.table({"index": np.arange(a, b), "x": col}, schema=schema))


def _writer(fmt: str, root: Path, w: int, lo: int, hi: int, dim: int) -> None:
    kind, _, codec = fmt.partition(":")
    if kind == "npy":
        _write_npy(root, w, lo, hi, dim)
    elif kind == "zarr":
        _write_zarr(root, w, lo, hi, dim, codec)
    else:
        _write_parquet(root, w, lo, hi, dim, codec)


def write(fmt: str, root: Path, rows: int, dim: int) -> float:
    """Seconds for 2 writer processes (plus the merge for npy)."""
    root.mkdir(parents=True)
    kind, _, codec = fmt.partition(":")
    t0 = time.perf_counter()
    if kind == "zarr":
        _make_zarr(root, rows, dim, codec)
    half = (rows // 2 // CHUNK) * CHUNK  # writers own whole chunks
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_writer, args=(fmt, root, w, lo, hi, dim))
        for w, (lo, hi) in enumerate([(0, half), (half, rows)])
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0, fmt
    if kind == "npy":
        _merge_npy(root, rows, dim)
    return time.perf_counter() - t0


def reader(fmt: str, root: Path):
    """A function row -> (dim,) array, and whether rows are memory-mapped."""
    kind = fmt.partition(":")[0]
    if kind == "npy":
        arr = np.load(root / "x.npy", mmap_mode="r")
        return (lambda i: np.array(arr[i])), True
    if kind == "zarr":
        import zarr

        z = zarr.open_array(root / "x.zarr", mode="r")
        return (lambda i: z[i]), False
    import pyarrow.parquet as pq

    files = sorted(root.glob("part-*.parquet"))
    metas = [pq.ParquetFile(f, memory_map=True) for f in files]
    starts = np.cumsum([0] + [m.metadata.num_rows for m in metas])

    def row(i: int) -> np.ndarray:
        k = int(np.searchsorted(starts, i, side="right") - 1)
        g, off = divmod(i - int(starts[k]), GROUP)
        col = metas[k].read_row_group(g, columns=["x"]).column("x")
        return np.asarray(col[off].values)

    return row, False


def measure(fmt: str, base: Path, rows: int, dim: int) -> dict[str, object]:
    root = base / fmt.replace(":", "-")
    secs = write(fmt, root, rows, dim)
    files = [p for p in root.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    row, mapped = reader(fmt, root)
    rng = np.random.default_rng(0)
    picks = rng.integers(0, rows, 200)
    lat = []
    for i in picks:
        t = time.perf_counter()
        got = row(int(i))
        lat.append(time.perf_counter() - t)
        assert got.shape == (dim,)
    want = _block(int(picks[0]), int(picks[0]) + 1, dim)[0]
    exact = np.array_equal(row(int(picks[0])), want) if fmt.startswith("npy") else None
    shutil.rmtree(root)
    return {
        "format": fmt,
        "write_MB_s": rows * dim * 4 / 1e6 / secs,
        "read_ms_median": statistics.median(lat) * 1e3,
        "read_ms_p95": sorted(lat)[int(0.95 * len(lat))] * 1e3,
        "mmap": mapped,
        "files": len(files),
        "size_MB": size / 1e6,
        "check": exact,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="fvstore", dir=args.dir))
    print(f"{args.rows} x {args.dim} float32 ({args.rows * args.dim * 4 / 1e6:.0f} MB), 2 writers")
    header = ("format", "write MB/s", "read ms p50", "p95", "mmap", "files", "MB")
    widths = (-16, 11, 12, 8, 6, 7, 9)
    cells = zip(header, widths, strict=True)
    print("".join(f"{h:<{-w}}" if w < 0 else f"{h:>{w}}" for h, w in cells))
    try:
        for fmt in ("npy", "zarr:none", "zarr:zstd", "parquet:none", "parquet:snappy"):
            r = measure(fmt, base, args.rows, args.dim)
            print(
                f"{r['format']:<16}{r['write_MB_s']:>11.0f}{r['read_ms_median']:>12.3f}"
                f"{r['read_ms_p95']:>8.3f}{'yes' if r['mmap'] else 'no':>6}{r['files']:>7}"
                f"{r['size_MB']:>9.0f}",
                flush=True,
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
