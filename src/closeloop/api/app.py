"""The REST API (FastAPI), generated from the command/query registry.

Every operation of ``closeloop.core.registry`` gets routes when the API is
built, so a command or query added by any area appears here, in the OpenAPI
document (its payload dataclass is the request schema) and under its roles,
with no change to this package:

- ``POST /api/v1/commands/{name}``: run a command (JSON body = its payload);
- ``GET  /api/v1/queries/{name}``: run a query with its fields as query
  parameters (queries whose fields are all scalars);
- ``POST /api/v1/queries/{name}``: the same query with a JSON body;
- resource-style routes from :data:`RESOURCES` (``GET /api/v1/invoices/{number}``,
  ``POST /api/v1/usage``, ...), each registered only when its operation exists.

Around every call: authentication (API key), the App's authorizer (roles,
entity scope, segregation of duties), input guards (size, JSON, storable
values, file names), ``Idempotency-Key`` on POST, cursor pagination of list
results, and one error body ``{code, message, details}``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from closeloop.api import idempotency
from closeloop.api.errors import ERROR_SCHEMA, ApiError, body, error_response, status_of
from closeloop.api.guard import (
    MAX_BODY,
    MAX_UPLOAD,
    check_file_name,
    check_values,
    is_file_field,
    parse_json_object,
    read_body,
)
from closeloop.auth.authorizer import APPROVER_FIELDS, current_principal
from closeloop.auth.users import Principal, record_event, verify_key
from closeloop.core import registry
from closeloop.core.errors import CloseloopError, ErrorCode, NotFoundError, ValidationError
from closeloop.core.registry import Operation

PREFIX = "/api/v1"
DEFAULT_PAGE = 100
MAX_PAGE = 1000
MAX_BATCH = 1000
PAGE_PARAMS = ("cursor", "page_size")
KEY_CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class Resource:
    """A resource-style route onto an operation; path parameters are payload fields."""

    method: str  # GET (a query) or POST (a command)
    path: str  # under /api/v1
    operation: str
    summary: str = ""
    # POST only: the body is {batch: [payload, ...]}. When the command itself has that field it gets the whole
    # batch in one unit of work; otherwise the API validates every item, then runs the command once per item.
    batch: str | None = None


RESOURCES: list[Resource] = [
    Resource("GET", "/invoices/{number}", "invoice", "One invoice by number"),
    Resource("GET", "/invoices", "invoices", "Invoices, filtered and paginated"),
    Resource("GET", "/customers/{external_id}", "customer", "One customer account by external id"),
    Resource("GET", "/contracts/{contract_id}", "contract", "One contract"),
    Resource("GET", "/disputes/{dispute_id}", "dispute", "One dispute"),
    Resource("GET", "/journals/{journal}", "journal", "One journal entry with its lines"),
    Resource("GET", "/exceptions", "exceptions", "The exception queue, filtered and paginated"),
    Resource("GET", "/entities", "entities", "The legal entities"),
    Resource("POST", "/usage", "usage.record", "Record a batch of usage events (each idempotent by its key)",
             batch="events"),
    Resource("POST", "/journals", "journal.post", "Post a manual journal"),
    Resource("POST", "/customers", "customer.upsert", "Create or update a customer account"),
    Resource("POST", "/payments", "payment.receive", "Record a received payment"),
]

# query -> the list field that cursor pagination pages through (otherwise: the result's only list of records).
LIST_FIELDS: dict[str, str] = {"exceptions": "items", "general_ledger": "lines", "entities": "entities"}


def add_resource(resource: Resource) -> None:
    """Areas or deployments may add resource-style routes; they appear when the API is next built."""
    RESOURCES.append(resource)


# --------------------------------------------------------------------------- schemas


class Schemas:
    """JSON Schemas of every payload dataclass (the same adapters that validate), for OpenAPI."""

    def __init__(self, ops: list[Operation]) -> None:
        inputs = [(op.name, "validation", op.adapter) for op in ops]
        mapping, defs = TypeAdapter.json_schemas(inputs, ref_template="#/components/schemas/{model}")
        self.components: dict[str, Any] = dict(defs.get("$defs", {}))
        self.by_op: dict[str, dict[str, Any]] = {}
        for op in ops:
            schema = mapping[(op.name, "validation")]
            target = self.resolve(schema)
            if op.kind == "command" and "source" not in target.get("properties", {}):
                target.setdefault("properties", {})["source"] = {
                    "type": "string", "maxLength": 32,
                    "description": "The source system of the change (crm, billing, finance, migration);"
                                   " the system-of-record registry decides whether it may make it"}
            self.by_op[op.name] = schema
        self.components["Error"] = ERROR_SCHEMA

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        ref = schema.get("$ref")
        if ref:
            return self.components[ref.rsplit("/", 1)[1]]  # type: ignore[no-any-return]
        return schema

    def properties(self, op: Operation) -> tuple[dict[str, Any], list[str]]:
        target = self.resolve(self.by_op[op.name])
        return dict(target.get("properties", {})), list(target.get("required", []))

    def scalar(self, prop: dict[str, Any]) -> dict[str, Any] | None:
        """The schema of a property usable as a query parameter (no objects, arrays or refs), null removed."""
        branches = prop.get("anyOf")
        if branches:
            branches = [b for b in branches if b.get("type") != "null"]
            if not branches or any(not self._is_scalar(b) for b in branches):
                return None
            out = {k: v for k, v in prop.items() if k not in ("anyOf", "default")}
            if len(branches) == 1:
                out.update(branches[0])
            else:
                out["anyOf"] = branches
            return out
        if not self._is_scalar(prop):
            return None
        return {k: v for k, v in prop.items() if not (k == "default" and v is None)}

    @staticmethod
    def _is_scalar(schema: dict[str, Any]) -> bool:
        return schema.get("type") in ("string", "integer", "number", "boolean") and "$ref" not in schema


def _error_responses() -> dict[str, Any]:
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    texts = {"401": "No or unknown API key (code forbidden)", "403": "Forbidden: role, entity scope or"
             " segregation of duties", "404": "A record does not exist", "409": "Conflict (duplicate, idempotency"
             " clash, closed period, approval required, not owner...)", "413": "Body too large",
             "415": "Body is not JSON", "422": "Invalid input (malformed JSON, wrong types, unknown fields...)"}
    return {code: {"description": text, "content": ref} for code, text in texts.items()}


OK_RESPONSE = {"200": {"description": "The result (amounts are decimal strings, dates ISO)",
                       "content": {"application/json": {"schema": {"type": "object",
                                                                   "additionalProperties": True}}}}}
SECURITY = [{"ApiKey": []}, {"Bearer": []}]


def _idempotency_param() -> dict[str, Any]:
    return {"name": "Idempotency-Key", "in": "header", "required": False,
            "description": "Repeat a POST safely: the same key with the same body returns the stored response;"
                           " with a different body it is 409 conflict.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[!-~]+$"}}


PAGE_PARAM_SCHEMAS = [
    {"name": "cursor", "in": "query", "required": False, "description": "next_cursor of the previous page",
     "schema": {"type": "string", "maxLength": 200}},
    {"name": "page_size", "in": "query", "required": False, "description": f"Items per page (default {DEFAULT_PAGE})",
     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}},
]


# --------------------------------------------------------------------------- the API object


class Api:
    """Builds the FastAPI routes over one closeloop App."""

    def __init__(self, cl: Any, *, upload_dir: str | None = None) -> None:
        self.cl = cl
        self.upload_dir = Path(upload_dir or os.environ.get("CLOSELOOP_UPLOAD_DIR")
                               or Path(tempfile.gettempdir()) / "closeloop-uploads")
        # Verified keys for KEY_CACHE_SECONDS (by the key's digest): a revoked key stops working within that time.
        self._keys: dict[str, tuple[float, Principal]] = {}

    # ---------------------------------------------------------------- authentication

    def authenticate(self, request: Request) -> Principal:
        key = request.headers.get("x-api-key")
        auth = request.headers.get("authorization")
        if key is None and auth and auth.lower().startswith("bearer "):
            key = auth[7:].strip()
        client = request.client.host if request.client else None
        challenge = {"WWW-Authenticate": 'Bearer realm="closeloop"'}
        if not key:
            raise ApiError(401, ErrorCode.FORBIDDEN, "an API key is required: send it as X-API-Key or"
                           " Authorization: Bearer (create one with `closeloop keys create USER`)",
                           headers=challenge, reason="unauthenticated")
        digest = hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()
        cached = self._keys.get(digest)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        with self.cl.unit_of_work(write=False) as uow:
            principal = verify_key(uow, key)
        if principal is not None:
            if len(self._keys) > 10_000:
                self._keys.clear()
            self._keys[digest] = (now + KEY_CACHE_SECONDS, principal)
        if principal is None:
            with self.cl.unit_of_work() as uow:
                record_event(uow, "api_key", "forbidden", detail=f"unknown or revoked key {key[:16]}...",
                             client=client)
            raise ApiError(401, ErrorCode.FORBIDDEN, "the API key is unknown or revoked", headers=challenge,
                           reason="unauthenticated")
        return principal

    # ---------------------------------------------------------------- running operations

    def prepare(self, op: Operation, data: dict[str, Any], principal: Principal | None = None) -> dict[str, Any]:
        """Validate at the boundary (the App validates again) and map file names into the upload folder.
        An omitted approver is the caller (the authorizer refuses any other name anyway)."""
        if principal is not None:
            for field in APPROVER_FIELDS:
                if field in op.fields and data.get(field) in (None, ""):
                    data = {**data, field: principal.name}
        parsed = op.parse(data)
        check_values(parsed)
        for field in op.fields:
            if is_file_field(field) and data.get(field) is not None:
                value = data[field]
                names = value if isinstance(value, list) else [value]
                paths = []
                for i, name in enumerate(names):  # every name first: a path anywhere refuses the request
                    check_file_name(name, f"{field}[{i}]" if isinstance(value, list) else field)
                for i, name in enumerate(names):
                    where = f"{field}[{i}]" if isinstance(value, list) else field
                    path = self.upload_dir / name
                    if not path.is_file():
                        raise NotFoundError(f"{where} {name!r} has not been uploaded (POST /api/v1/files)",
                                            field=where, record=name)
                    paths.append(str(path))
                data = {**data, field: paths if isinstance(value, list) else paths[0]}
        return data

    def run(self, principal: Principal, op: Operation, data: dict[str, Any]) -> dict[str, Any]:
        data = self.prepare(op, data, principal)
        token = current_principal.set(principal)
        try:
            if op.kind == "command":
                return self.cl.do(op.name, data, actor=principal.name)  # type: ignore[no-any-return]
            return self.cl.query(op.name, data, actor=principal.name)  # type: ignore[no-any-return]
        finally:
            current_principal.reset(token)

    def run_batch(self, principal: Principal, op: Operation, items: list[Any], field: str) -> dict[str, Any]:
        if len(items) > MAX_BATCH:
            raise ValidationError(f"{field}: at most {MAX_BATCH} items per request, got {len(items)}", field=field)
        prepared = []
        for i, item in enumerate(items):  # validate all first: a malformed batch writes nothing
            if not isinstance(item, dict):
                raise ValidationError(f"{field}[{i}] must be a JSON object", field=f"{field}[{i}]")
            try:
                prepared.append(self.prepare(op, item, principal))
            except CloseloopError as err:
                err.details.setdefault("index", i)
                err.message = f"{field}[{i}]: {err.message}"
                raise
        results: list[dict[str, Any]] = []
        token = current_principal.set(principal)
        try:
            for i, item in enumerate(prepared):
                try:
                    results.append({"index": i, "status": "ok", "result": self.cl.do(op.name, item,
                                                                                      actor=principal.name)})
                except CloseloopError as err:
                    results.append({"index": i, "status": "error", "error": body(err)})
        finally:
            current_principal.reset(token)
        ok = sum(r["status"] == "ok" for r in results)
        return {"accepted": ok, "rejected": len(results) - ok, "results": results}

    def paginate(self, op: Operation, data: dict[str, Any], cursor: str | None, page_size: int,
                 principal: Principal) -> dict[str, Any]:
        offset = 0
        digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]
        if cursor:
            offset = decode_cursor(cursor, digest)
        query_data = dict(data)
        if "limit" in op.fields and "limit" not in data:
            query_data["limit"] = offset + page_size + 1
        result = self.run(principal, op, query_data)
        field = LIST_FIELDS.get(op.name) or _only_list(result)
        if field is None or not isinstance(result.get(field), list):
            return result
        items = result[field]
        page = items[offset:offset + page_size]
        more = len(items) > offset + page_size
        out = dict(result)
        out[field] = page
        if "page" not in out:
            out["page"] = {"field": field, "page_size": page_size, "offset": offset,
                           "next_cursor": encode_cursor(offset + page_size, digest) if more else None}
        return out

    # ---------------------------------------------------------------- POST with idempotency

    def post(self, request: Request, principal: Principal, path: str, data: Any,
             call: Callable[[], dict[str, Any]]) -> JSONResponse:
        key = request.headers.get("idempotency-key")
        if key is None:
            return self._respond(call)[0]
        idempotency.check_key(key)
        digest = idempotency.request_hash("POST", path, data)
        stored = idempotency.claim(self.cl, principal.name, key, f"POST {path}", digest)
        if stored is not None:
            status, content = stored
            return JSONResponse(content, status_code=status, headers={"Idempotent-Replayed": "true"})
        try:
            response, status, content = self._respond(call)
        except BaseException:
            idempotency.release(self.cl, principal.name, key)
            raise
        idempotency.store(self.cl, principal.name, key, status, content)
        return response

    @staticmethod
    def _respond(call: Callable[[], dict[str, Any]]) -> tuple[JSONResponse, int, Any]:
        try:
            content = call()
            return JSONResponse(content), 200, content
        except CloseloopError as err:
            return error_response(err), status_of(err), body(err)

    # ---------------------------------------------------------------- upload

    def upload(self, name: str, raw: bytes) -> dict[str, Any]:
        check_file_name(name, "name")
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        target = self.upload_dir / name
        tmp = target.with_name(f".{name}.{os.getpid()}.part")
        tmp.write_bytes(raw)
        os.replace(tmp, target)
        return {"file": name, "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}


def _only_list(result: dict[str, Any]) -> str | None:
    """A list query not named in LIST_FIELDS pages through its ``items``."""
    return "items" if isinstance(result.get("items"), list) else None


def encode_cursor(offset: int, digest: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset, "q": digest}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, digest: str) -> int:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        offset, query = int(data["o"]), str(data["q"])
    except Exception:  # noqa: BLE001 - any malformed cursor is the client's error
        raise ValidationError("cursor is not a cursor this API returned", field="cursor") from None
    if query != digest or offset < 0 or offset > 2**31:
        raise ValidationError("cursor belongs to a query with other filters; start again without a cursor",
                              field="cursor")
    return offset


def _page_size(value: str | None) -> int:
    if value is None:
        return DEFAULT_PAGE
    try:
        size = int(value)
    except ValueError:
        raise ValidationError(f"page_size {value!r} is not a whole number", field="page_size") from None
    if not 1 <= size <= MAX_PAGE:
        raise ValidationError(f"page_size must be between 1 and {MAX_PAGE}", field="page_size")
    return size


def _query_params(request: Request, op: Operation) -> tuple[dict[str, Any], str | None, int]:
    data: dict[str, Any] = {}
    cursor = page_size = None
    for name, value in request.query_params.multi_items():
        if name == "cursor" and name not in op.fields:
            cursor = value
        elif name == "page_size" and name not in op.fields:
            page_size = value
        else:
            data[name] = value
    check_values(data)
    return data, cursor, _page_size(page_size)


# --------------------------------------------------------------------------- building the FastAPI app


def create_api(cl: Any, *, title: str = "closeloop API", upload_dir: str | None = None,
               app: FastAPI | None = None) -> FastAPI:
    """Build (or extend ``app`` with) the REST API over the App ``cl`` and the registry as it is now."""
    api = Api(cl, upload_dir=upload_dir)
    app = app or FastAPI(title=title, version="1", docs_url=f"{PREFIX}/docs", redoc_url=None,
                         openapi_url=f"{PREFIX}/openapi.json")
    app.state.api = api
    ops = sorted(registry.operations().values(), key=lambda o: (o.kind, o.name))
    schemas = Schemas(ops)
    errors = _error_responses()

    def responses() -> dict[str, Any]:
        return {**OK_RESPONSE, **errors}

    for op in ops:
        props, required = schemas.properties(op)
        request_body = {"required": op.kind == "command" and bool(required),
                        "content": {"application/json": {"schema": schemas.by_op[op.name]}}}
        doc = f"{op.summary}\n\nRoles: {', '.join(op.roles)}."
        if op.kind == "command":
            app.add_api_route(
                f"{PREFIX}/commands/{op.name}", _command_endpoint(api, op), methods=["POST"], summary=op.summary,
                description=doc, tags=["commands"], operation_id=f"command_{_ident(op.name)}",
                openapi_extra={"requestBody": request_body, "parameters": [_idempotency_param()],
                               "responses": responses(), "security": SECURITY})
        else:
            params = _get_params(schemas, props, required)
            if params is not None:
                app.add_api_route(
                    f"{PREFIX}/queries/{op.name}", _query_get_endpoint(api, op), methods=["GET"],
                    summary=op.summary, description=doc, tags=["queries"], operation_id=f"query_{_ident(op.name)}",
                    openapi_extra={"parameters": params + PAGE_PARAM_SCHEMAS, "responses": responses(),
                                   "security": SECURITY})
            app.add_api_route(
                f"{PREFIX}/queries/{op.name}", _query_post_endpoint(api, op), methods=["POST"],
                summary=op.summary, description=doc, tags=["queries"], operation_id=f"query_{_ident(op.name)}_post",
                openapi_extra={"requestBody": request_body, "parameters": [_idempotency_param()]
                               + PAGE_PARAM_SCHEMAS, "responses": responses(), "security": SECURITY})
    _add_resources(app, api, schemas, responses)
    _add_fixed_routes(app, api, responses)
    from closeloop.api.webhooks import add_webhook_routes

    add_webhook_routes(app, api)
    _install_error_handlers(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version, routes=app.routes,
                          description="closeloop REST API: every command and query of the vocabulary. See docs/api.md.")
        components = doc.setdefault("components", {})
        components.setdefault("schemas", {}).update(schemas.components)
        components["securitySchemes"] = {
            "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "Bearer": {"type": "http", "scheme": "bearer"},
        }
        doc["paths"] = {p: v for p, v in doc["paths"].items() if p.startswith(PREFIX)}
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _ident(name: str) -> str:
    return name.replace(".", "_").replace("-", "_")


def _get_params(schemas: Schemas, props: dict[str, Any], required: list[str]) -> list[dict[str, Any]] | None:
    params = []
    for name, prop in props.items():
        scalar = schemas.scalar(prop)
        if scalar is None:
            if name in required:
                return None
            continue  # an optional structured field: only the POST form takes it
        params.append({"name": name, "in": "query", "required": name in required, "schema": scalar,
                       **({"description": prop["description"]} if "description" in prop else {})})
    return params


def _command_endpoint(api: Api, op: Operation) -> Callable[..., Any]:
    async def endpoint(request: Request) -> JSONResponse:
        principal = await run_in_threadpool(api.authenticate, request)
        data = parse_json_object(await read_body(request, MAX_BODY), request.headers.get("content-type"))
        return await run_in_threadpool(api.post, request, principal, request.url.path, data,
                                       lambda: api.run(principal, op, data))

    return endpoint


def _query_get_endpoint(api: Api, op: Operation) -> Callable[..., Any]:
    def call(request: Request) -> dict[str, Any]:
        principal = api.authenticate(request)
        data, cursor, size = _query_params(request, op)
        data.update(request.path_params)
        return api.paginate(op, data, cursor, size, principal)

    async def endpoint(request: Request) -> JSONResponse:
        return JSONResponse(await run_in_threadpool(call, request))

    return endpoint


def _query_post_endpoint(api: Api, op: Operation) -> Callable[..., Any]:
    async def endpoint(request: Request) -> JSONResponse:
        principal = await run_in_threadpool(api.authenticate, request)
        data = parse_json_object(await read_body(request, MAX_BODY), request.headers.get("content-type"))
        cursor = request.query_params.get("cursor")
        size = _page_size(request.query_params.get("page_size"))
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return await run_in_threadpool(api.post, request, principal, path, data,
                                       lambda: api.paginate(op, data, cursor, size, principal))

    return endpoint


def _add_resources(app: FastAPI, api: Api, schemas: Schemas, responses: Callable[[], dict[str, Any]]) -> None:
    ops = registry.operations()
    for res in RESOURCES:
        op = ops.get(res.operation)
        if op is None or (op.kind == "query") != (res.method == "GET"):
            continue  # plugs in when the area that owns the operation registers it
        path = PREFIX + res.path
        path_params = [p.strip("{}") for p in res.path.split("/") if p.startswith("{")]
        props, required = schemas.properties(op)
        summary = res.summary or op.summary
        doc = f"{summary}\n\nRuns the {op.kind} `{op.name}`. Roles: {', '.join(op.roles)}."
        pparams = [{"name": p, "in": "path", "required": True,
                    "schema": schemas.scalar(props.get(p, {"type": "string"})) or {"type": "string"}}
                   for p in path_params]
        if res.method == "GET":
            params = _get_params(schemas, {k: v for k, v in props.items() if k not in path_params},
                                 [r for r in required if r not in path_params])
            if params is None:
                continue
            app.add_api_route(path, _query_get_endpoint(api, op), methods=["GET"], summary=summary, description=doc,
                              tags=["resources"], operation_id=f"get_{_ident(res.path.strip('/').split('/')[0])}"
                              + ("_one" if path_params else "_list"),
                              openapi_extra={"parameters": pparams + params + PAGE_PARAM_SCHEMAS,
                                             "responses": responses(), "security": SECURITY})
        elif res.batch and res.batch not in op.fields:
            schema = {"type": "object", "additionalProperties": False, "required": [res.batch],
                      "properties": {res.batch: {"type": "array", "maxItems": MAX_BATCH,
                                                 "items": schemas.by_op[op.name]}}}
            app.add_api_route(path, _batch_endpoint(api, op, res.batch), methods=["POST"], summary=summary,
                              description=doc + " Every item is validated before any is recorded; the response"
                              " lists each item's result or error.", tags=["resources"],
                              operation_id=f"post_{_ident(res.path.strip('/'))}_batch",
                              openapi_extra={"requestBody": {"required": True,
                                                             "content": {"application/json": {"schema": schema}}},
                                             "parameters": [_idempotency_param()], "responses": responses(),
                                             "security": SECURITY})
        else:
            app.add_api_route(path, _command_endpoint(api, op), methods=["POST"], summary=summary, description=doc,
                              tags=["resources"], operation_id=f"post_{_ident(res.path.strip('/'))}",
                              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                                  "schema": schemas.by_op[op.name]}}}, "parameters": [_idempotency_param()],
                                  "responses": responses(), "security": SECURITY})


def _batch_endpoint(api: Api, op: Operation, field: str) -> Callable[..., Any]:
    async def endpoint(request: Request) -> JSONResponse:
        principal = await run_in_threadpool(api.authenticate, request)
        data = parse_json_object(await read_body(request, MAX_BODY), request.headers.get("content-type"),
                                 allow_empty=False)
        unknown = set(data) - {field}
        if unknown or not isinstance(data.get(field), list):
            raise ValidationError(f"the body is {{{field!r}: [...]}}" + (f"; unknown fields {sorted(unknown)}"
                                  if unknown else ""), field=sorted(unknown)[0] if unknown else field)
        return await run_in_threadpool(api.post, request, principal, request.url.path, data,
                                       lambda: api.run_batch(principal, op, data[field], field))

    return endpoint


def _add_fixed_routes(app: FastAPI, api: Api, responses: Callable[[], dict[str, Any]]) -> None:
    async def health() -> dict[str, Any]:
        return {"status": "ok"}

    async def me(request: Request) -> dict[str, Any]:
        p = await run_in_threadpool(api.authenticate, request)
        return {"name": p.name, "roles": sorted(p.roles), "entities": sorted(p.entities)}

    async def operations(request: Request) -> dict[str, Any]:
        p = await run_in_threadpool(api.authenticate, request)
        ops = sorted(registry.operations().values(), key=lambda o: (o.kind, o.name))
        return {"operations": [{"name": o.name, "kind": o.kind, "summary": o.summary, "roles": list(o.roles),
                                "fields": list(o.fields), "allowed": bool(p.roles & set(o.roles))} for o in ops]}

    async def upload(request: Request) -> JSONResponse:
        principal = await run_in_threadpool(api.authenticate, request)
        name = request.query_params.get("name")
        check_file_name(name, "name")
        writers = set(registry.ALL_WRITERS)
        if not principal.roles & writers:
            from closeloop.core.errors import ForbiddenError

            raise ForbiddenError(f"{principal.name} may not upload files (read only)", field="role")
        raw = await read_body(request, MAX_UPLOAD)
        return await run_in_threadpool(api.post, request, principal, request.url.path + f"?name={name}",
                                       {"sha256": hashlib.sha256(raw).hexdigest()},
                                       lambda: api.upload(str(name), raw))

    obj = {"application/json": {"schema": {"type": "object", "additionalProperties": True}}}
    app.add_api_route(f"{PREFIX}/health", health, methods=["GET"], tags=["meta"], summary="Liveness",
                      operation_id="health", openapi_extra={"responses": {"200": {"description": "ok",
                                                                                  "content": obj}}})
    app.add_api_route(f"{PREFIX}/me", me, methods=["GET"], tags=["meta"], summary="The authenticated user",
                      operation_id="me", openapi_extra={"responses": responses(), "security": SECURITY})
    app.add_api_route(f"{PREFIX}/operations", operations, methods=["GET"], tags=["meta"],
                      summary="Every command and query with its roles and fields", operation_id="operations",
                      openapi_extra={"responses": responses(), "security": SECURITY})
    app.add_api_route(
        f"{PREFIX}/files", upload, methods=["POST"], tags=["meta"], operation_id="upload_file",
        summary="Upload a file (bank statement, import) for commands that take a file name",
        openapi_extra={"parameters": [{"name": "name", "in": "query", "required": True,
                                       "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"}},
                                      _idempotency_param()],
                       "requestBody": {"required": True, "content": {"application/octet-stream": {
                           "schema": {"type": "string", "format": "binary"}}}},
                       "responses": responses(), "security": SECURITY})


def _install_error_handlers(app: FastAPI) -> None:
    async def closeloop_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, CloseloopError)
        return error_response(exc)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = ErrorCode.NOT_FOUND if exc.status_code == 404 else ErrorCode.VALIDATION_ERROR
        message = {404: f"no such route: {request.method} {request.url.path} (see {PREFIX}/openapi.json)",
                   405: f"method {request.method} is not allowed on {request.url.path}"}.get(
            exc.status_code, str(exc.detail))
        if not request.url.path.startswith(PREFIX) and exc.status_code in (401, 403, 404, 405):
            handler = getattr(app.state, "html_error", None)
            if handler is not None:
                return handler(request, exc.status_code, message)  # type: ignore[no-any-return]
        return JSONResponse({"code": str(code), "message": message, "details": {}}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [{"field": ".".join(str(p) for p in e["loc"]), "reason": e["msg"]} for e in exc.errors()]
        return JSONResponse({"code": "validation_error", "message": "; ".join(f"{e['field']}: {e['reason']}"
                                                                              for e in errors),
                             "details": {"errors": errors}}, status_code=422)

    async def internal(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"code": "internal_error", "message": f"internal error: {type(exc).__name__}",
                             "details": {}}, status_code=500)

    app.add_exception_handler(CloseloopError, closeloop_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, internal)
