"""Collections: list, create, delete (the routes of one are the others, prefixed with
``/collections/{collection}``: see ``service.app``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from rag.settings import INDEX_NAME_PATTERN
from service.openapi import errors
from service.routers.deps import collections
from service.schemas import CollectionIn, CollectionList, CollectionOut
from service.security import authorize, readable, require_admin_key, require_any_read_key
from service.services import Collection, Collections

router = APIRouter(tags=["collections"])
Registry = Annotated[Collections, Depends(collections)]


def collection_out(c: Collection, registry: Collections) -> CollectionOut:
    ready = c.qa.ready
    docs, chunks = c.qa.counts() if ready else (None, None)
    return CollectionOut(
        name=c.name,
        default=c.name == registry.default_name,
        model=registry.model_id(c.name),
        ready=ready,
        documents=docs,
        chunks=chunks,
    )


@router.get(
    "/collections",
    response_model=CollectionList,
    dependencies=[Depends(require_any_read_key)],
    summary="The collections this key may read",
)
def list_collections(request: Request, registry: Registry) -> CollectionList:
    items = [collection_out(c, registry) for c in registry if readable(request, c.name)]
    return CollectionList(items=items)


@router.get(
    "/collections/{name}",
    response_model=CollectionOut,
    dependencies=[Depends(require_any_read_key)],
    summary="One collection, with its document and chunk counts",
    responses=errors(404),
)
def get_collection(
    request: Request, name: Annotated[str, Path(pattern=INDEX_NAME_PATTERN)], registry: Registry
) -> CollectionOut:
    authorize(request, name)  # before the lookup: a key outside its scope learns nothing
    return collection_out(registry.get(name), registry)


@router.post(
    "/collections",
    response_model=CollectionOut,
    status_code=201,
    dependencies=[Depends(require_admin_key)],
    summary="Create a collection (an empty named index)",
    responses=errors(409),
)
async def create_collection(body: CollectionIn, registry: Registry) -> JSONResponse:
    created = await run_in_threadpool(registry.create, body.name)
    out = collection_out(created, registry)
    return JSONResponse(
        out.model_dump(mode="json"),
        status_code=201,
        headers={"Location": f"/collections/{created.name}"},
    )


@router.delete(
    "/collections/{name}",
    status_code=204,
    dependencies=[Depends(require_admin_key)],
    summary="Delete a collection, its documents and its index",
    responses=errors(404, 409),
)
async def delete_collection(
    name: Annotated[str, Path(pattern=INDEX_NAME_PATTERN)], registry: Registry
) -> Response:
    await run_in_threadpool(registry.delete, name)
    return Response(status_code=204)
