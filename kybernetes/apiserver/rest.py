"""REST verbs on resources: get, list, watch, create, update, patch, delete, deletecollection."""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime as dt
import logging
import random

import orjson
from aiohttp import web
from multidict import CIMultiDict

from kybernetes.api import errors
from kybernetes.api.registry import Registry, Resource
from kybernetes.api.selectors import (POD_FIELDS, LabelSelector, SelectorError, field_set,
                                      parse_field_selector, parse_label_selector)
from kybernetes.store import CompactedError

from . import admission, patching
from . import convert  # conversion: see convert.py
from .objects import Objects, now_rfc3339
from .request import (Accept, bool_param, decode_body, decode_kind, dry_run, int_param,
                      media_type, parse_accept, read_body, require_object)
from .response import SMALL, JsonResponse, one_line
from .watchcache import CachedEvent, WatchCache

log = logging.getLogger(__name__)

_TOO_OLD_CONTINUE = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this "
    "response to retrieve the remainder of the results. Continuing with the provided token "
    "results in an inconsistent list - objects that were created, modified, or deleted between "
    "the time the first chunk was returned and now may show up in the list.")


_BATCH = 256  # most watch events in one write
BOOKMARK_AFTER = 30.0  # seconds a watcher that allows bookmarks may go without a frame
_BOOKMARK = object()  # on a watcher's queue: time for a bookmark


# aiohttp copies the headers it is given; building them from this is cheaper than content_type=.
_JSON_HEADERS = CIMultiDict({"Content-Type": "application/json"})


def json_response(body: dict | bytes, status: int = 200,
                  headers: dict | None = None) -> web.Response | JsonResponse:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    if len(data) <= SMALL:
        return JsonResponse(data, status, headers)
    if not headers:
        return web.Response(body=data, status=status, headers=_JSON_HEADERS)
    merged = CIMultiDict(_JSON_HEADERS)
    merged.update(headers)
    return web.Response(body=data, status=status, headers=merged)


# JSON of stored objects (never changed in place), by identity: a write's answer and the watch
# frames of its event carry the same object, which is then encoded once, not three times.
_OBJECT_JSON: dict[int, tuple[dict, bytes]] = {}
_FRAME_HEADS = {t: b'{"type":"%s","object":' % t.encode() for t in ("ADDED", "MODIFIED", "DELETED")}


def object_json(obj: dict) -> bytes:
    hit = _OBJECT_JSON.get(id(obj))
    if hit is not None and hit[0] is obj:
        return hit[1]
    data = orjson.dumps(obj)
    if len(_OBJECT_JSON) >= 4096:
        _OBJECT_JSON.clear()
    _OBJECT_JSON[id(obj)] = (obj, data)   # holds obj: its id is not reused while here
    return data


# Field sets of stored objects (never changed in place), by identity: each watch with a field
# selector asks for the same event's object, and a change's previous state was asked for when
# it was new. The entry holds the object, so its id cannot be reused while it is here.
_FIELD_SETS: dict[int, tuple[dict, str, dict]] = {}


def _field_set(kind: str, obj: dict) -> dict:
    hit = _FIELD_SETS.get(id(obj))
    if hit is not None and hit[0] is obj and hit[1] == kind:
        return hit[2]
    fields = field_set(kind, obj)
    if len(_FIELD_SETS) >= 4096:
        _FIELD_SETS.clear()
    _FIELD_SETS[id(obj)] = (obj, kind, fields)
    return fields


class _PodFields:
    """A pod's selectable fields, each looked up when a selector asks for it."""

    __slots__ = ("obj",)

    def __init__(self, obj: dict):
        self.obj = obj

    def get(self, field: str, default: str = "") -> str:
        get = POD_FIELDS.get(field)
        return default if get is None else get(self.obj)


class Selectors:
    def __init__(self, query, r: Resource):
        try:
            self.labels: LabelSelector = parse_label_selector(query.get("labelSelector"))
            self.fields = parse_field_selector(query.get("fieldSelector"))
            if not self.fields.empty():
                self.fields.check(r.kind)
        except SelectorError as e:
            raise errors.bad_request(str(e)) from None
        self.kind = r.kind
        self.trivial = self.labels.empty() and self.fields.empty()

    def match(self, obj: dict | None) -> bool:
        if obj is None:
            return False
        if self.trivial:
            return True
        meta = obj.get("metadata") or {}
        if not self.labels.matches(meta.get("labels") or {}):
            return False
        if self.fields.empty():
            return True
        if self.kind == "Pod":
            return self.fields.matches(_PodFields(obj))
        return self.fields.matches(_field_set(self.kind, obj))

    def name_only(self) -> str | None:
        """`metadata.name=X` selects one key: no need to scan the collection."""
        return self.fields.requires_exact_match("metadata.name")


class Rest:
    def __init__(self, registry: Registry, objects: Objects, cache: WatchCache):
        self.registry = registry
        self.objects = objects
        self.cache = cache

    # ---- output ----

    def output(self, r: Resource, obj: dict, accept: Accept, status: int = 200,
               warnings: list[str] | None = None) -> web.Response:
        obj = convert.from_storage(r, obj)  # conversion: see convert.py
        headers = _warning_headers(warnings)
        if accept.table:
            return json_response(self.table(r, [obj], obj["metadata"].get("resourceVersion", ""),
                                            None, accept), status, headers)
        if accept.partial_metadata:
            return json_response(_partial(obj), status, headers)
        return json_response(object_json(obj), status, headers)

    def table(self, r: Resource, items: list[dict], rv: str, cont: str | None, accept: Accept,
              columns: bool = True, stored: bool = False) -> dict:
        """`stored`: the items are states as stored (lists, watch events), whose rows may be
        reused; a write's response may be a dry run and is rendered afresh."""
        from kybernetes.api import tables

        return tables.to_table(r.group, r.plural, items, list_resource_version=rv,
                               continue_token=cont, include_object=accept.include_object,
                               with_column_definitions=columns,
                               printer_columns=list(r.printer_columns) or None, cache=stored)

    # ---- reads ----

    async def get(self, request: web.Request, r: Resource, ns: str | None, name: str) -> web.Response:
        accept = parse_accept(request.headers.get("Accept"))
        rv = request.query.get("resourceVersion")
        if rv and rv != "0":
            obj = self.cache.get(r.key(ns, name))
            if obj is None or int(obj["metadata"]["resourceVersion"]) < _rv(rv):
                obj = await self.objects.get(r, ns, name)
        elif rv == "0":
            obj = self.cache.get(r.key(ns, name))
            if obj is None:
                raise errors.not_found(r.plural, name, r.group)
        else:
            obj = await self.objects.get(r, ns, name)
        return self.output(r, obj, accept)

    async def list(self, request: web.Request, r: Resource, ns: str | None) -> web.StreamResponse:
        q = request.query
        if bool_param(q, "watch"):
            return await self.watch(request, r, ns)
        accept = parse_accept(request.headers.get("Accept"))
        sel = Selectors(q, r)
        limit = int_param(q, "limit") or 0
        cont = q.get("continue")
        rv_param = q.get("resourceVersion")
        match = q.get("resourceVersionMatch")
        prefix = r.key_prefix() + (f"{ns}/" if ns else "")
        keys: list[str] | None = None  # cache keys of items, when served from the cache
        if cont:
            items, rv, next_cont = await self._list_continue(r, prefix, cont, sel, limit)
        elif match == "Exact" and rv_param:
            items, rv, next_cont = await self._list_at(r, prefix, _rv(rv_param), sel, limit)
        else:
            if not rv_param:
                await self.cache.sync()
            elif rv_param != "0":
                if not await self.cache.wait_for(_rv(rv_param), timeout=3):
                    raise errors.timeout(f"Too large resource version: {rv_param}, current: {self.cache.revision}")
            all_items, rv = self.cache.list(prefix)
            if r.namespaced and not ns:
                pass
            selected = [(k, o) for k, o in all_items if sel.match(o)]
            next_cont = None
            if limit and len(selected) > limit:
                selected = selected[:limit]
                next_cont = _encode_continue(rv, selected[-1][0])
            keys = [k for k, _ in selected]
            items = [o for _, o in selected]
        items = [convert.from_storage(r, o) for o in items]  # conversion: see convert.py
        rv_s = str(rv)
        if accept.table:
            return json_response(self.table(r, items, rv_s, next_cont, accept, stored=True))
        meta: dict = {"resourceVersion": rv_s}
        if next_cont:
            meta["continue"] = next_cont
        if accept.partial_metadata:
            body = {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                    "metadata": meta, "items": [_partial(o) for o in items]}
            return json_response(body)
        # Join items' cached encodings: the list body is the hot path for big collections.
        head = orjson.dumps({"kind": r.list_kind, "apiVersion": r.api_version, "metadata": meta})
        if keys is not None:
            encoded = self.cache.encoded
            parts = b",".join([encoded(k, o) for k, o in zip(keys, items)])
        else:
            parts = orjson.dumps(items)[1:-1]
        return web.Response(body=head[:-1] + b',"items":[' + parts + b"]}",
                            content_type="application/json")

    async def _list_continue(self, r, prefix, token, sel, limit):
        rv, start_after = _decode_continue(token, prefix)
        return await self._list_at(r, prefix, rv, sel, limit, start_after)

    async def _list_at(self, r, prefix, rv, sel, limit, start_after=None):
        out: list[dict] = []
        last_key = start_after
        try:
            while True:
                res = await self.objects.store.range(prefix, limit=max(limit, 500) if limit else 0,
                                                     start_after=last_key, revision=rv)
                from .watchcache import decode

                for kv in res.kvs:
                    last_key = kv.key
                    obj = decode(kv.value, kv.mod_revision)
                    if sel.match(obj):
                        out.append(obj)
                        if limit and len(out) == limit:
                            break
                if limit and len(out) == limit:
                    more = res.more or kv.key != res.kvs[-1].key
                    return out, rv, (_encode_continue(rv, last_key) if more else None)
                if not res.more or not res.kvs:
                    return out, rv, None
        except CompactedError:
            raise errors.expired(_TOO_OLD_CONTINUE) from None

    # ---- watch ----

    async def watch(self, request: web.Request, r: Resource, ns: str | None,
                    name: str | None = None) -> web.StreamResponse:
        q = request.query
        accept = parse_accept(request.headers.get("Accept"))
        sel = Selectors(q, r)
        bookmarks = bool_param(q, "allowWatchBookmarks")
        initial_end = bool_param(q, "sendInitialEvents")
        timeout = int_param(q, "timeoutSeconds")
        if timeout is None:
            timeout = int(1800 * (1 + random.random()))
        rv_param = q.get("resourceVersion")
        prefix = r.key_prefix() + (f"{ns}/" if ns else "")
        single = name or sel.name_only()
        if single and r.namespaced and ns:
            prefix = r.key(ns, single)
        if rv_param in (None, "", "0") or initial_end:
            if not rv_param:
                await self.cache.sync()
            after = None
        else:
            after = _rv(rv_param)
            if after > self.cache.revision:
                await self.cache.wait_for(after, timeout=3)
        pump = None
        try:
            watcher, initial = self.cache.watch(prefix, after)
        except CompactedError:
            # Older than the cache's memory (e.g. just after a restart): the store may still
            # hold that history; this watcher then reads from the store.
            try:
                watcher, pump = await self.cache.watch_from_store(prefix, after)
            except CompactedError:
                return await self._expired_stream(request, r, rv_param)
            initial = []
        resp = web.StreamResponse(status=200)
        resp.content_type = "application/json"
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        stream = _WatchStream(self, r, resp, accept, sel, single)
        ticker = None
        try:
            async with asyncio.timeout(timeout):
                for i in range(0, len(initial), _BATCH):
                    await stream.send_many(initial[i:i + _BATCH])
                if initial_end:
                    await stream.bookmark(self.cache.revision, initial_events_end=True)
                queue = watcher.queue
                if bookmarks:
                    ticker = _BookmarkTicker(queue)
                while True:
                    ev = await queue.get()
                    if ev is _BOOKMARK:
                        await stream.bookmark(self.cache.revision)
                        continue
                    # Whatever queued up meanwhile goes out in the same write.
                    batch = [ev]
                    while ev is not None and len(batch) < _BATCH and not queue.empty():
                        ev = queue.get_nowait()
                        if ev is not _BOOKMARK:     # events are going out anyway
                            batch.append(ev)
                    if ev is None:
                        batch.pop()
                    await stream.send_many(batch)
                    if ticker is not None:
                        ticker.sent()
                    if ev is None:
                        break
        except (TimeoutError, ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.cache.unwatch(watcher)
            if pump:
                pump.cancel()
            if ticker is not None:
                ticker.cancel()
        try:
            await resp.write_eof()
        except (ConnectionResetError, RuntimeError):
            pass
        return resp

    async def _expired_stream(self, request, r, rv_param):
        """Too-old resourceVersion: one ERROR event carrying a 410 Status, as kube does."""
        resp = web.StreamResponse(status=200)
        resp.content_type = "application/json"
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        st = errors.expired(f"too old resource version: {rv_param} ({self.cache.oldest_revision() + 1})").status()
        await resp.write(orjson.dumps({"type": "ERROR", "object": st}) + b"\n")
        await resp.write_eof()
        return resp

    # ---- writes ----

    async def create(self, request: web.Request, r: Resource, ns: str | None) -> web.Response:
        q = request.query
        accept = parse_accept(request.headers.get("Accept"))
        obj = require_object(decode_body(await read_body(request), request.headers.get("Content-Type")))
        admission.check_type(r, obj)
        warnings, complete = admission.field_check_walked(r, obj, q.get("fieldValidation", "Strict"))
        if r.namespaced:
            await self._namespace_open(ns)
        admission.apply_defaults(r, obj)
        # As upstream's create handler: the field manager records the request as decoded and
        # defaulted, before the strategy and admission add their own fields.
        patching.track_update(r, None, obj, request)
        admission.prepare_create(r, obj, ns)
        hooks = self.hooks(r)
        if hooks:
            await hooks.admit(obj)
        admission.validate(r, obj, None, types_checked=complete)
        if hooks:
            await hooks.before_create(obj)
        out = await self.objects.create(r, obj, dry_run=dry_run(q))
        if hooks and not dry_run(q):
            await hooks.after_create(out)
        return self.output(r, out, accept, 201, warnings)

    def hooks(self, r: Resource):
        return getattr(self, "kind_hooks", {}).get((r.group, r.plural))

    async def _namespace_open(self, ns: str | None) -> None:
        """NamespaceLifecycle: the namespace must exist and not be terminating."""
        nsr = self.registry.get("", "v1", "namespaces")
        obj = self.cache.get(nsr.key(None, ns or ""))
        if obj is None:
            await self.cache.sync()
            obj = self.cache.get(nsr.key(None, ns or ""))
        if obj is None:
            raise errors.not_found("namespaces", ns or "")
        if obj["metadata"].get("deletionTimestamp"):
            raise errors.ApiError(
                403, "Forbidden",
                f"unable to create new content in namespace {ns} because it is being terminated",
                name=ns, kind="namespaces",
                causes=[{"reason": "NamespaceTerminating", "field": "metadata.namespace",
                         "message": f"namespace {ns} is being terminated"}])

    async def update(self, request: web.Request, r: Resource, ns: str | None, name: str,
                     subresource: str | None = None) -> web.Response:
        q = request.query
        accept = parse_accept(request.headers.get("Accept"))
        body = require_object(decode_body(await read_body(request), request.headers.get("Content-Type")))
        admission.check_type(r, body)
        warnings = admission.field_check(r, body, q.get("fieldValidation", "Strict"))
        meta = body.get("metadata") or {}
        if meta.get("name") and meta["name"] != name:
            raise errors.bad_request(
                "the name of the object (%s) does not match the name on the URL (%s)" % (meta["name"], name))
        want_rv = meta.get("resourceVersion")

        async def mutate(current: dict) -> dict:
            current = convert.from_storage(r, current)  # conversion: see convert.py
            if want_rv and want_rv != current["metadata"]["resourceVersion"]:
                raise errors.conflict(r.plural, name, r.group)
            new = copy.deepcopy(body)
            await self.prepare_write(r, new, current, subresource, request)
            return new

        _, out = await self.objects.update(r, ns, name, mutate, dry_run=dry_run(q))
        return self.output(r, out, accept, 200, warnings)

    async def prepare_write(self, r: Resource, new: dict, current: dict, subresource: str | None,
                            request: web.Request) -> None:
        """Everything an update does to the object before it is written."""
        admission.apply_defaults(r, new)
        admission.prepare_update(r, new, current, subresource)
        hooks = self.hooks(r)
        if hooks and not subresource:
            await hooks.before_update(new, current)
        admission.validate(r, new, current)
        patching.track_update(r, current, new, request, subresource)

    async def patch(self, request: web.Request, r: Resource, ns: str | None, name: str,
                    subresource: str | None = None) -> web.Response:
        q = request.query
        accept = parse_accept(request.headers.get("Accept"))
        ctype = media_type(request.headers.get("Content-Type"))
        raw = await read_body(request)
        if ctype == patching.APPLY:
            return await patching.server_side_apply(self, request, r, ns, name, raw, accept)
        patch = patching.decode_patch(raw, ctype)
        field_mode = q.get("fieldValidation", "Strict")
        warnings: list[str] = []

        async def mutate(current: dict) -> dict:
            current = convert.from_storage(r, current)  # conversion: see convert.py
            new = patching.apply_patch(r, current, patch, ctype)
            admission.check_type(r, new)
            _same_identity(new, current)
            warnings[:] = admission.field_check(r, new, field_mode)
            want_rv = (new.get("metadata") or {}).get("resourceVersion")
            if want_rv and want_rv != current["metadata"]["resourceVersion"]:
                raise errors.conflict(r.plural, name, r.group)
            await self.prepare_write(r, new, current, subresource, request)
            return new

        _, out = await self.objects.update(r, ns, name, mutate, dry_run=dry_run(q))
        return self.output(r, out, accept, 200, warnings)

    # ---- delete ----

    async def delete(self, request: web.Request, r: Resource, ns: str | None, name: str) -> web.Response:
        accept = parse_accept(request.headers.get("Accept"))
        opts = await _delete_options(request)
        obj, deleted = await self.delete_one(r, ns, name, opts)
        if deleted and r.plural not in ("pods", "services", "namespaces") and not r.schema:
            return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {},
                                  "status": "Success",
                                  "details": {"name": name, "group": r.group, "kind": r.plural,
                                              "uid": obj["metadata"].get("uid")}})
        return self.output(r, obj, accept, 200)

    async def delete_one(self, r: Resource, ns: str | None, name: str, opts: dict) -> tuple[dict, bool]:
        """Returns (object, deleted now). Finalizers or a grace period leave it in place with a
        deletionTimestamp; the last finalizer's removal deletes it."""
        dry = opts.get("dryRun") == ["All"]
        policy = opts.get("propagationPolicy")
        if opts.get("orphanDependents") is True and policy is None:
            policy = "Orphan"
        if opts.get("orphanDependents") is not None and opts.get("propagationPolicy") is not None:
            raise errors.invalid("DeleteOptions", "", [{"reason": "FieldValueInvalid",
                "field": "propagationPolicy",
                "message": f'Invalid value: "{policy}": orphanDependents and deletionPropagation cannot be both set'}],
                "meta.k8s.io")
        if policy not in (None, "Orphan", "Foreground", "Background"):
            raise errors.invalid("DeleteOptions", "", [{"reason": "FieldValueNotSupported",
                "field": "propagationPolicy",
                "message": f'Unsupported value: "{policy}": supported values: "Foreground", "Background", "Orphan"'}],
                "meta.k8s.io")
        pre = opts.get("preconditions") or {}
        grace = opts.get("gracePeriodSeconds")
        outcome: dict = {}

        async def mutate(current: dict) -> dict | None:
            outcome.clear()  # a retried attempt decides afresh
            meta = current["metadata"]
            if pre.get("uid") and pre["uid"] != meta.get("uid"):
                raise errors.conflict(r.plural, name, r.group,
                                      f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {meta.get('uid')}")
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
                raise errors.conflict(r.plural, name, r.group,
                                      f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, ResourceVersion in object meta: {meta['resourceVersion']}")
            finalizers = list(meta.get("finalizers") or [])
            if policy == "Orphan" and "orphan" not in finalizers:
                finalizers.append("orphan")
                finalizers = [f for f in finalizers if f != "foregroundDeletion"]
            elif policy == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
                finalizers = [f for f in finalizers if f != "orphan"]
            elif policy == "Background":
                finalizers = [f for f in finalizers if f not in ("orphan", "foregroundDeletion")]
            pod_grace = _pod_grace(r, current, grace)
            ns_pending = r.plural == "namespaces" and not r.group and (current.get("spec") or {}).get("finalizers")
            if not finalizers and not pod_grace and not ns_pending:
                outcome["delete"] = current
                return None
            if meta.get("deletionTimestamp") and finalizers == list(meta.get("finalizers") or []) \
                    and not pod_grace:
                return None  # already being deleted; nothing new to record
            meta["finalizers"] = finalizers
            if not finalizers:
                meta.pop("finalizers")
            if pod_grace:
                ts = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=pod_grace)
                old_ts = meta.get("deletionTimestamp")
                new_ts = ts.strftime("%Y-%m-%dT%H:%M:%SZ")
                if not old_ts or new_ts < old_ts:
                    meta["deletionTimestamp"] = new_ts
                    meta["deletionGracePeriodSeconds"] = pod_grace
            else:
                meta.setdefault("deletionTimestamp", now_rfc3339())
                meta.setdefault("deletionGracePeriodSeconds", 0)
            if ns_pending:
                current.setdefault("status", {})["phase"] = "Terminating"
            return current

        old, new = await self.objects.update(r, ns, name, mutate, dry_run=dry)
        if "delete" in outcome:
            if dry:
                return outcome["delete"], True
            deleted = await self.objects.delete(
                r, ns, name, expected_mod_revision=int(outcome["delete"]["metadata"]["resourceVersion"]))
            hooks = self.hooks(r)
            if hooks:
                await hooks.after_delete(deleted)
            return deleted, True
        return new, False

    async def delete_collection(self, request: web.Request, r: Resource, ns: str | None) -> web.Response:
        opts = await _delete_options(request)
        sel = Selectors(request.query, r)
        await self.cache.sync()
        prefix = r.key_prefix() + (f"{ns}/" if ns else "")
        items, rv = self.cache.list(prefix)
        deleted = []
        for _, obj in items:
            if not sel.match(obj):
                continue
            try:
                out, _ = await self.delete_one(r, obj["metadata"].get("namespace"),
                                               obj["metadata"]["name"], opts)
                deleted.append(out)
            except errors.ApiError as e:
                if e.code != 404:
                    raise
        return json_response({"kind": r.list_kind, "apiVersion": r.api_version,
                              "metadata": {"resourceVersion": str(self.cache.revision)},
                              "items": [convert.from_storage(r, o) for o in deleted]})


class _BookmarkTicker:
    """Puts _BOOKMARK on a watcher's queue once BOOKMARK_AFTER seconds pass without a frame:
    one timer per watch, where a timeout around each wait for an event cost ~8 µs a wake."""

    def __init__(self, queue: asyncio.Queue) -> None:
        self.queue = queue
        self.loop = asyncio.get_running_loop()
        self.last = self.loop.time()
        self.handle = self.loop.call_at(self.last + BOOKMARK_AFTER, self._tick)

    def sent(self) -> None:
        self.last = self.loop.time()

    def _tick(self) -> None:
        now = self.loop.time()
        if now - self.last >= BOOKMARK_AFTER:
            self.queue.put_nowait(_BOOKMARK)
            self.last = now     # the bookmark is this period's frame
        self.handle = self.loop.call_at(self.last + BOOKMARK_AFTER, self._tick)

    def cancel(self) -> None:
        self.handle.cancel()


class _WatchStream:
    """Writes events for one watcher: selector transitions, format, one Table header."""

    def __init__(self, rest: Rest, r: Resource, resp: web.StreamResponse, accept: Accept,
                 sel: Selectors, single: str | None):
        self.rest, self.r, self.resp, self.accept, self.sel = rest, r, resp, accept, sel
        self.single = single
        self.sent_columns = False

    async def send(self, ev: CachedEvent) -> None:
        await self.send_many([ev])

    async def send_many(self, events: list[CachedEvent]) -> None:
        """One write for several events: far fewer TLS records when a watcher is behind."""
        frames = [f for f in map(self.frame, events) if f is not None]
        if frames:
            await self.resp.write(frames[0] if len(frames) == 1 else b"".join(frames))

    def frame(self, ev: CachedEvent) -> bytes | None:
        """The line this watcher gets for ev, None when its selectors hide it."""
        ev = convert.event_from_storage(self.r, ev)  # conversion: see convert.py
        kind = ev.type
        if self.single and ev.obj["metadata"].get("name") != self.single:
            return None
        if kind == "DELETED":
            if not self.sel.match(ev.prev):
                return None
        elif kind == "MODIFIED" and not self.sel.trivial:
            now_in, was_in = self.sel.match(ev.obj), self.sel.match(ev.prev)
            if now_in and not was_in:
                kind = "ADDED"
            elif was_in and not now_in:
                kind = "DELETED"
            elif not now_in:
                return None
        elif not self.sel.match(ev.obj):
            return None
        return self.encode(kind, ev)

    def encode(self, kind: str, ev: CachedEvent) -> bytes:
        if self.accept.table:
            table = self.rest.table(self.r, [ev.obj], ev.obj["metadata"]["resourceVersion"], None,
                                    self.accept, columns=not self.sent_columns, stored=True)
            self.sent_columns = True
            return orjson.dumps({"type": kind, "object": table}) + b"\n"
        if self.accept.partial_metadata:
            return orjson.dumps({"type": kind, "object": _partial(ev.obj)}) + b"\n"
        key = ("json", kind)
        data = ev.encoded.get(key)
        if data is None:
            # the bytes orjson.dumps({"type": kind, "object": obj}) gives, from the shared JSON
            data = _FRAME_HEADS[kind] + object_json(ev.obj) + b"}\n"
            ev.encoded[key] = data
        return data

    async def bookmark(self, revision: int, initial_events_end: bool = False) -> None:
        meta: dict = {"resourceVersion": str(revision)}
        if initial_events_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        obj = {"kind": self.r.kind, "apiVersion": self.r.api_version, "metadata": meta}
        await self.resp.write(orjson.dumps({"type": "BOOKMARK", "object": obj}) + b"\n")


def _partial(obj: dict) -> dict:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata", {})}


def _warning_headers(warnings: list[str] | None) -> dict | None:
    if not warnings:
        return None
    def quoted(w: str) -> str:  # user text (unknown field names) may hold line breaks
        return one_line(w).replace("\\", "\\\\").replace('"', '\\"')

    return {"Warning": ", ".join(f'299 - "{quoted(w)}"' for w in warnings)}


def _rv(value: str) -> int:
    try:
        rv = int(value)
        if rv < 0:
            raise ValueError
        return rv
    except ValueError:
        raise errors.bad_request(f'invalid resource version "{value}"') from None


def _encode_continue(rv: int, key: str) -> str:
    raw = orjson.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": key})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_continue(token: str, prefix: str) -> tuple[int, str]:
    try:
        pad = "=" * (-len(token) % 4)
        data = orjson.loads(base64.urlsafe_b64decode(token + pad))
        rv, start = int(data["rv"]), str(data["start"])
    except Exception:
        raise errors.bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)") from None
    if not start.startswith(prefix):
        raise errors.bad_request("continue key is not valid: key does not match the list")
    return rv, start


async def _delete_options(request: web.Request) -> dict:
    body = await read_body(request)
    opts: dict = {}
    if body.strip():
        opts = decode_kind(body, request.headers.get("Content-Type"), "DeleteOptions", ("v1",))
    q = request.query
    if "gracePeriodSeconds" in q:
        opts["gracePeriodSeconds"] = int_param(q, "gracePeriodSeconds")
    if "propagationPolicy" in q:
        opts["propagationPolicy"] = q["propagationPolicy"]
    if "orphanDependents" in q:
        opts["orphanDependents"] = bool_param(q, "orphanDependents")
    if dry_run(q):
        opts["dryRun"] = ["All"]
    if opts.get("dryRun") not in (None, [], ["All"]):
        raise errors.bad_request(f"unsupported dry run option {opts['dryRun']}")
    return opts


def _same_identity(new: dict, current: dict) -> None:
    """A patch may not rename or move the object it patches (kube's checkName)."""
    meta, cur = new.get("metadata"), current["metadata"]
    if not isinstance(meta, dict):
        raise errors.bad_request("metadata must be an object")
    if meta.get("name") not in (None, "", cur["name"]):
        raise errors.bad_request(
            f"the name of the object ({meta['name']}) does not match the name on the URL ({cur['name']})")
    if meta.get("namespace") not in (None, "", cur.get("namespace")):
        raise errors.bad_request(
            "the namespace of the provided object does not match the namespace sent on the request")


def _pod_grace(r: Resource, pod: dict, grace: int | None) -> int:
    """Seconds a pod gets to stop: 0 when no kubelet runs it (unbound or finished)."""
    if r.group or r.plural != "pods":
        return 0
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
        return 0
    if grace is None:
        grace = spec.get("terminationGracePeriodSeconds", 30)
    return max(int(grace or 0), 0)
