"""Dropped files: picked up from the landing prefix, landed in raw as source `file`, flowed down.

Each tick of `file_drops` (every minute):

1. batches under `landing/claimed/` whose run succeeded are archived to `landing/processed/`;
   a claim without a plan (a tick that died half-way) goes back to `landing/` once it is older
   than `STALE_CLAIM_SECONDS`;
2. every new file in `landing/` is claimed by one rename into `landing/claimed/<batch>/` (files
   over `MAX_DROP_BYTES` are rejected unread) and parsed there (see `landing.py` for the
   formats). A file that cannot be parsed is moved to `landing/rejected/<stamp>/` with a
   `.reason.txt` beside it and the tick goes on with the other files;
3. the readable files of the tick become one batch: its plan is written last (the commit), and
   ONE run is requested: the daily path (raw -> gold) over the
   sessions from the files' first session through the latest closed session (later sessions'
   indicators depend on the new rows), scoped to the files' tickers with the `marketflow/tickers`
   run tag. Its raw/daily_bars step lands the files (run config `file_batch`) under
   raw/file/daily_bars/ with a manifest, so bronze and silver read them and the rows carry
   source 'file'; nothing is asked of the provider.
   Statement files (`statement_drops.py`) are moved to a batch of their own,
   `<batch>-statements`, whose run is raw -> bronze -> silver financial statements (run config
   `file_batch` on raw/financial_statements); `late_fact_rebuilds` then rebuilds gold. Every
   request names its assets, as the sensor targets both paths.

Readable files wait in `landing/` while a run or backfill that builds daily bars is in progress
(its checks compare raw, bronze and silver for its sessions); they are parsed once meanwhile
(unreadable ones rejected) and remembered in the cursor by size and version. Idempotent across ticks: a file
leaves `landing/` when it is claimed or rejected, and a batch is
requested once (cursor, and the batch id as run key). If a batch's run fails, the files stay
claimed and the run-failure alert names the run: re-execute it from the UI (the tags and config
carry over), or move the files back into `landing/` to drop them again. A file dropped with a
newer fetch time wins over earlier provider fetches of the same bar in bronze (latest fetch).
RUNNING by default: it lists a folder.
"""

import datetime as dt
import json

import dagster as dg

from marketflow_assets.automation.common import (
    AUTOMATION_TAG,
    FILE_DROP_SELECTION,
    automation_now,
    daily_work_in_progress,
    digest,
    first_session,
    latest_closed,
    range_tags,
    tickers_tag,
)
from marketflow_assets.calendar import EXCHANGE_TZ
from marketflow_assets.faults import fault_point
from marketflow_assets.ingestion.landing import (
    BATCH_PLAN,
    CLAIMED,
    MAX_DROP_BYTES,
    STALE_CLAIM_SECONDS,
    DroppedFile,
    DropRejected,
    archive,
    batch_age_seconds,
    claim,
    claimed_batches,
    dropped_entries,
    landing_store,
    move,
    parse_drop,
    reject,
    relative,
    release_claim,
    requeue_batch,
    unplanned_claims,
)
from marketflow_assets.ingestion.landing import KIND as STATEMENTS
from marketflow_assets.resources import MarketDataResource
from marketflow_assets.storage.lake import LakeResource
from marketflow_assets.storage.object_store import UnsafeObjectError

FILE_BATCH_TAG = "marketflow/file_batch"
FILE_DROPS_INTERVAL_SECONDS = 60
RAW_DAILY_OP = "raw__daily_bars"


RAW_STATEMENTS_OP = "raw__financial_statements"
# Dropped statements: raw -> bronze -> silver facts; gold follows through late_fact_rebuilds.
STATEMENT_DROP_SELECTION = dg.AssetSelection.assets(
    dg.AssetKey(["raw", "financial_statements"]),
    dg.AssetKey(["bronze", "financial_statements"]),
    dg.AssetKey(["bronze", "statement_documents"]),  # written with the statements, one step
    dg.AssetKey(["silver", "financial_facts"]),
)


def batch_request(batch: str, plan: dict, context: dg.SensorEvaluationContext) -> dg.RunRequest:
    """The run of a batch: the daily path over its sessions (bars), or the statements path."""
    statements = plan.get("kind") == STATEMENTS
    selection = STATEMENT_DROP_SELECTION if statements else FILE_DROP_SELECTION
    op = RAW_STATEMENTS_OP if statements else RAW_DAILY_OP
    sessions = (
        {}
        if statements
        else range_tags(dt.date.fromisoformat(plan["start"]), dt.date.fromisoformat(plan["end"]))
    )
    return dg.RunRequest(
        run_key=f"file_drop:{batch}",
        run_config={"ops": {op: {"config": {"file_batch": batch}}}},
        asset_selection=_keys(context, selection),
        tags={
            AUTOMATION_TAG: "file_drop",
            FILE_BATCH_TAG: batch,
            **sessions,
            **tickers_tag(plan["tickers"]),
        },
    )


def _keys(context: dg.SensorEvaluationContext, selection: dg.AssetSelection) -> list[dg.AssetKey]:
    """The sensor targets both paths: each request names its own assets."""
    graph = context.repository_def.asset_graph
    return sorted(selection.required_multi_asset_neighbors().resolve(graph), key=str)


@dg.sensor(
    name="file_drops",
    target=FILE_DROP_SELECTION | STATEMENT_DROP_SELECTION,
    minimum_interval_seconds=FILE_DROPS_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Picks up CSV (Yahoo export + Ticker column or <TICKER>.csv) and JSON OHLCV files dropped "
        "in $MARKETFLOW_HOME/landing/ (or landing/ in the S3 lake): lands them in raw as source "
        "'file' and runs the daily path for the affected sessions and tickers, one run per tick's "
        "batch; statement files (long format) get their own batch and run (raw -> silver facts). Unreadable files move to landing/rejected/ with a reason file; the others still "
        "process. Landed batches move to landing/processed/. RUNNING by default: it lists a folder."
    ),
)
def file_drops_sensor(
    context: dg.SensorEvaluationContext, lake: LakeResource, market_data: MarketDataResource
):
    store = landing_store(lake)
    now = automation_now(market_data)
    state = json.loads(context.cursor) if context.cursor else {}
    requested: dict[str, str] = dict(state.get("requested", {}))
    waiting: dict[str, list] = dict(state.get("waiting", {}))
    notes: list[str] = []
    requests: list[dg.RunRequest] = []

    # Landing rows while another run builds daily bars would make that run's checks compare raw
    # rows it never read: readable files wait in landing/ until it is done.
    busy = daily_work_in_progress(context.instance)
    wall = dt.datetime.now(dt.UTC)
    stamp = wall.strftime("%Y%m%dT%H%M%S%fZ")

    # 1. claimed batches: archive the landed ones; re-request one whose request was lost; put
    # back the files of a claim whose tick died before writing its plan.
    for batch, keys in unplanned_claims(store).items():
        age = batch_age_seconds(batch, wall)
        if age is None or age >= STALE_CLAIM_SECONDS:
            restored = release_claim(store, batch, keys)
            notes.append(f"claim {batch} had no plan (a tick died): {len(restored)} file(s) back")
    unreadable: dict[str, str] = {}
    for batch, plan in claimed_batches(store, unreadable).items():
        runs = context.instance.get_runs(filters=dg.RunsFilter(tags={FILE_BATCH_TAG: batch}))
        if any(run.status == dg.DagsterRunStatus.SUCCESS for run in runs):
            moved = archive(store, batch)
            requested.pop(batch, None)
            notes.append(f"batch {batch} landed: {moved} file(s) archived to landing/processed/")
        elif not runs and batch not in requested and not busy:
            requests.append(batch_request(batch, plan, context))
            requested[batch] = now.isoformat()
            notes.append(f"batch {batch} had no run: requested")
    # A batch whose plan is unreadable (truncated, hand-edited): archived if its run succeeded,
    # left alone while a run has it, else its files go back to landing/ to be claimed anew.
    for batch, reason in unreadable.items():
        runs = context.instance.get_runs(filters=dg.RunsFilter(tags={FILE_BATCH_TAG: batch}))
        if any(run.status == dg.DagsterRunStatus.SUCCESS for run in runs):
            moved = archive(store, batch)
            notes.append(f"batch {batch} landed: {moved} file(s) archived to landing/processed/")
        elif any(not run.is_finished for run in runs):
            context.log.warning(f"{reason}; batch {batch} has a run in progress: left alone")
        else:
            returned = requeue_batch(store, batch, reason, stamp)
            requested.pop(batch, None)
            context.log.warning(
                f"{reason}: plan moved to landing/rejected/{stamp}/, "
                f"{len(returned)} file(s) returned to landing/ to be claimed again"
            )
            notes.append(f"batch {batch}: unreadable plan, {len(returned)} file(s) re-dropped")

    # 2. new files: too large ones are rejected unread; while daily work is in progress, files
    # are parsed once (unreadable ones rejected) and wait; else they are claimed by an atomic
    # rename, parsed where they now are, and the readable ones become one batch.
    today = now.astimezone(EXCHANGE_TZ).date()
    entries = dropped_entries(store)
    for key, (size, _) in list(entries.items()):
        if size > MAX_DROP_BYTES:
            reason = f"{key}: {size:,} bytes is over the {MAX_DROP_BYTES:,}-byte limit for a drop"
            reject(store, key, reason, stamp)
            notes.append(f"rejected {relative(key)}: {reason}")
            del entries[key]

    def parse(key: str, name: str) -> DroppedFile | None:
        try:
            data = store.get(key)
        except UnsafeObjectError as exc:  # a link or a hard link: never read, never followed
            reason = str(exc).replace(key, name)  # name the file as dropped, not as claimed
            target = reject(store, key, reason, stamp, name=relative(name), keep=False)
            context.log.warning(f"rejected {store.uri(name)} -> {store.uri(target)}: {reason}")
            notes.append(f"rejected {relative(name)}: {reason}")
            return None
        except Exception as exc:  # e.g. deleted meanwhile: next tick
            context.log.warning(f"could not read {store.uri(key)}: {exc}")
            return None
        try:
            return parse_drop(name, data, today=today)
        except DropRejected as exc:
            target = reject(store, key, str(exc), stamp, name=relative(name))
            context.log.warning(f"rejected {store.uri(name)} -> {store.uri(target)}: {exc}")
            notes.append(f"rejected {relative(name)}: {exc}")
            return None

    if busy:
        # Parsed once, then remembered by (size, version) until they change or are claimed.
        for key, version in entries.items():
            if waiting.get(key) != list(version) and parse(key, key) is not None:
                waiting[key] = list(version)
        waiting = {k: v for k, v in waiting.items() if k in entries}
        if waiting:
            notes.append(f"{len(waiting)} readable file(s) wait in landing/ for {busy} to finish")
        entries = {}
    else:
        waiting = {}

    batch = f"{stamp}-{digest(sorted(entries.items()))[:8]}"
    claimed = {key: claim(store, key, batch) for key in entries}
    fault_point("file_drops.claim")
    parsed = [d for key, ck in claimed.items() if ck and (d := parse(ck, key)) is not None]
    accepted = [d for d in parsed if d.kind != STATEMENTS]
    statements = [d for d in parsed if d.kind == STATEMENTS]
    if statements:
        # Their own batch (and run): statements have no sessions and take the statements path.
        own = f"{batch}-{STATEMENTS}"
        for dropped in statements:
            move(store, claimed[dropped.key], f"{CLAIMED}{own}/{relative(dropped.key)}")
        tickers = sorted({t for d in statements for t in d.tickers})
        plan = {
            "batch": own,
            "kind": STATEMENTS,
            "tickers": tickers,
            "files": [
                {"file": relative(d.key), "sha256": d.sha256, "rows": len(d.frame)}
                for d in statements
            ],
        }
        store.put(f"{CLAIMED}{own}/{BATCH_PLAN}", json.dumps(plan, indent=1).encode())
        requests.append(batch_request(own, plan, context))
        requested[own] = now.isoformat()
        notes.append(f"batch {own}: {len(statements)} statements file(s), {', '.join(tickers)}")
    if accepted:
        latest = latest_closed(now)
        start = max(first_session(context), min(d.first for d in accepted))
        end = max([d.last for d in accepted] + ([latest] if latest else []))
        if end < start:
            for dropped in accepted:
                reason = f"{dropped.key}: every row is before the first partition {start}"
                reject(store, claimed[dropped.key], reason, stamp, name=relative(dropped.key))
                notes.append(f"rejected {relative(dropped.key)}: {reason}")
        else:
            tickers = sorted({t for d in accepted for t in d.tickers})
            plan = {
                "batch": batch,
                "start": start.isoformat(),
                "end": end.isoformat(),
                "tickers": tickers,
                "files": [
                    {
                        "file": relative(d.key),
                        "sha256": d.sha256,
                        "rows": len(d.frame),
                        "sessions": f"{d.first}..{d.last}",
                    }
                    for d in accepted
                ],
            }
            # The files first (claimed by rename), the plan last: it is the commit. A tick that
            # dies before it leaves an unplanned claim, which step 1 puts back in landing/.
            store.put(f"{CLAIMED}{batch}/{BATCH_PLAN}", json.dumps(plan, indent=1).encode())
            requests.append(batch_request(batch, plan, context))
            requested[batch] = now.isoformat()
            notes.append(
                f"batch {batch}: {len(accepted)} file(s), {', '.join(tickers)}, "
                f"sessions {start}..{end}"
            )

    for note in notes:
        context.log.info(note)
    cursor = json.dumps(
        {"requested": requested, **({"waiting": waiting} if waiting else {})}, sort_keys=True
    )
    if requests:
        return dg.SensorResult(run_requests=requests, cursor=cursor)
    return dg.SensorResult(
        skip_reason="; ".join(notes) if notes else "no new file in the landing prefix",
        cursor=cursor,
    )
