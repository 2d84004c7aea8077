"""The ASGI app of ``cbir serve``: pages and a JSON API over one index database, read only.

Every page has a JSON twin under ``/api/`` built from the same data (as datasette does): the page renders what the
API returns. Work that touches the index or decodes pictures runs in the server's thread pool, never on the event
loop. See docs/web.md.
"""

import collections
import contextlib
import functools
import logging
import os
import secrets
import threading

import jinja2
import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MultiDict
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..core.histogram import region_map
from ..errors import CbirError, DatabaseError, DecodeError
from . import words
from .library import Library
from .queries import BadRequest, NotFound, Query, number_of_results, read_query, read_upload
from .security import BodyTooLarge, LimitBody, SecurityHeaders
from .thumbnails import Thumbnails, picture, read_photo

HERE = os.path.dirname(os.path.abspath(__file__))
PAGE = 120  # thumbnails per page of a folder
GROUPS_PAGE = 40  # groups of copies per page of the duplicates
VIEW_SIZE = 1280  # longest side of an image page's picture
log = logging.getLogger("cbir.web")


@functools.lru_cache(maxsize=1)
def templates():
    return jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(HERE, "templates")), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


class Pages:
    """The handlers, holding the library, thumbnails and limits of one app."""

    def __init__(self, db_path, *, max_upload_bytes, max_upload_pixels, thumbnail_size=240, thumbnails=None):
        self.library = Library(db_path)
        self.thumbnails = Thumbnails(db_path, thumbnail_size, thumbnails)
        self.max_upload_bytes, self.max_upload_pixels = max_upload_bytes, max_upload_pixels
        self.uploads = Uploads()
        self._duplicates_lock = threading.Lock()  # one all-pairs comparison at a time: each loads every histogram

    def warm(self):
        """Load the index's histograms now rather than on the first search; returns how many there are."""
        with self.library.searching() as index:
            index.typical_distances()
            return len(index)

    # --- data shared by pages and API ------------------------------------------------------------------------
    def info(self):
        index = self.library.lookup()
        settings, (rgb, shares), count = index.settings, index.codebook_colours(), index.image_count()
        said = words_for(rgb, settings.layout)
        return {"database": os.path.basename(self.library.db_path), "images": count, "layout": settings.layout,
                "grid": grid_shape(settings.layout), "regions": region_count(settings.layout),
                "codebook": [{"hex": hex_, "name": name, "share": float(share)}
                             for hex_, name, share in zip(said.hexes, said.names, shares)]}

    def folder(self, folder, page):
        index = self.library.lookup()
        result = index.folder(folder, page * PAGE, PAGE)
        pages = max(1, -(-result.count // PAGE))
        if page >= pages and result.count:
            raise NotFound(f"page {page + 1} of {folder or 'the top folder'} does not exist (it has {pages})")
        return {"folder": folder, "parents": parents(folder), "page": page, "pages": pages, "count": result.count,
                "subfolders": [{"name": name, "folder": join(folder, name)} for name in result.subfolders],
                "images": [image_card(i) for i in result.images]}

    def image(self, image_id):
        with self.library.searching() as index:
            found = index.images([image_id])
            if not found:
                raise NotFound(f"no indexed image with id {image_id}")
            vector = index.histograms([image_id])
            makeup = index.colour_makeup(vector)[0]
            layout = index.settings.layout
            said = words_for(index.codebook_colours()[0], layout)
        info = found[0]
        blocks = vector.reshape(-1, len(said.hexes))
        regions = blocks[1:] if layout.startswith("global+") else blocks
        return {**image_card(info), "size": info.size, "sha256": info.sha256, "folder": parent_of(info.stored_path),
                "makeup": makeup_parts(makeup, said.hexes), "grid": grid_shape(layout),
                "named": [p for p in said.named_shares(makeup) if p["share"] >= 0.005],
                "regions": [makeup_parts(r, said.hexes) for r in regions] if grid_shape(layout) else []}

    def search(self, params, upload=None):
        n = number_of_results(params.get("n"))
        with self.library.searching() as index:
            layout = index.settings.layout
            query = read_query(params, index, region_count(layout), self.uploads) if upload is None else upload
            exclude = set(query.like) | set(query.unlike)  # the marked photos are not shown again
            if query.colours is not None:  # ranked as cbir query --color ranks: by the share of the colours missing
                results = index.search_colours(query.colours, n)
            elif query.examples is None:
                results = index.search_vectors([query.vector], n + len(exclude))[0]
            else:  # several examples, or some unlike: relevance feedback ranks them together
                results = index.search(query.examples, n + len(exclude), negative=query.unlike)
            results = [r for r in results if r.image_id not in exclude][:n]
            ids = [r.image_id for r in results]
            infos = {i.image_id: i for i in index.images(ids)}
            explanation = index.explain(query.vector, ids)
            typical = index.typical_distances()
            said = words_for(index.codebook_colours()[0], layout)
            makeups = index.colour_makeup(index.histograms(ids)) if ids else np.zeros((0, len(said.hexes)))
            query_makeup = index.colour_makeup(query.vector[None])[0]
        cards = []
        for j, result in enumerate(results):
            why = said.explain(explanation.terms[j], explanation.signed[j])
            shared = said.named_shares(np.minimum(makeups[j], query_makeup))
            # "% similar" and "why" compare with the query's histogram (with several examples, their mean), so they
            # agree; a feedback ranking's own distance is to the point it learned, reported as "distance".
            compared = float(np.sqrt(explanation.terms[j].sum()))
            found = [{"colour": c.spec.rpartition(":")[0] or c.spec, "hex": c.hex, "wanted": c.share, "found": f}
                     for c, f in zip(query.colours or (), result.found)]
            cards.append({**image_card(infos[result.image_id]), "rank": j + 1, "distance": result.distance,
                          # a colour search alone: the share of the colours asked for that the picture has
                          "similarity": (sum(min(f["found"], f["wanted"]) for f in found) / sum(f["wanted"] for f in found)
                                         if found else words.similarity(compared, typical)),
                          "found": found,
                          "makeup": makeup_parts(makeups[j], said.hexes),
                          "why": {"compared": compared, "regions": why.regions, "colours": why.colours,
                                  "reasons": [{"text": str(r), "share": r.share, "hex": r.hex} for r in why.reasons],
                                  "shared": [p for p in shared if p["share"] >= 0.01][:4]}})
        return {"query": {"kind": query.kind, "title": query.title, "like": query.like, "unlike": query.unlike,
                          "params": query.params, "makeup": makeup_parts(query_makeup, said.hexes),
                          "feedback": query.examples is not None, "note": query.note},
                "n": n, "grid": grid_shape(layout), "global_block": layout.startswith("global+"),
                "results": cards}

    def duplicates(self, params):
        """Groups of copies (:meth:`cbir.Index.duplicates`), one page of them. Only the tier, threshold and page are
        read from the request; images are named by id, thumbnails served by id."""
        tier, threshold, page = duplicates_params(params)
        with self._duplicates_lock:  # on a look-up Index: searches do not wait for it
            index = self.library.lookup()
            report = index.duplicates(tier=tier, threshold=threshold)
            pages = max(1, -(-len(report.groups) // GROUPS_PAGE))
            if page >= pages and report.groups:
                raise NotFound(f"page {page + 1} of the duplicates does not exist (there are {pages})")
            shown = report.groups[page * GROUPS_PAGE:(page + 1) * GROUPS_PAGE]
            infos = {i.image_id: i for i in index.images([m.image_id for g in shown for m in g.members])}
        groups = []
        for group in shown:
            members = [{**image_card(infos[m.image_id]), "role": "keeper" if k == 0 else "copy",
                        "relation": m.relation_label, "symmetry": m.symmetry, "distance": m.distance,
                        "colour_distance": m.colour_distance, "structure_distance": m.structure_distance,
                        "size": m.size} for k, m in enumerate(group.members) if m.image_id in infos]
            groups.append({"tier": group.tier, "kind": group.label, "why": group.why, "members": members})
        return {"tier": tier, "threshold": threshold, "images": report.images,
                "without_structure": report.without_structure, "seconds": report.seconds,
                "count": len(report.groups), "page": page, "pages": pages,
                "tiers": {str(t): sum(g.tier == t for g in report.groups) for t in (1, 2, 3)}, "groups": groups}

    async def upload(self, request):
        if "cbir.too_large" in request.scope:
            raise BodyTooLarge(request.scope["cbir.too_large"])
        form = await request.form(max_files=1, max_fields=10)
        try:
            item = form.get("image")
            if item is None or isinstance(item, str) or not item.filename:
                raise BadRequest("choose an image file to search with (form field 'image')")
            data = await item.read(self.max_upload_bytes + 1)
            params = MultiDict([(k, v) for k, v in form.multi_items() if isinstance(v, str)])
        finally:
            await form.close()
        if len(data) > self.max_upload_bytes:
            raise BodyTooLarge(self.max_upload_bytes)
        return await run_in_threadpool(self.search_upload, data, item.filename, params)

    def search_upload(self, data, filename, params):
        image = read_upload(data, filename, self.library.lookup().settings.min_side, self.max_upload_pixels)
        token = self.uploads.keep(image)  # for "more like these" rounds that start from it
        with self.library.searching() as index:
            vector = index.histogram(image)
        return self.search(params, Query("upload", f"uploaded {filename}", vector, params=[("upload", token)]))

    def thumbnail(self, image_id, size=None):
        found = self.library.lookup().images([image_id])
        if not found:
            raise NotFound(f"no indexed image with id {image_id}")
        if size is None:
            return self.thumbnails.get(found[0])
        return picture(read_photo(found[0].path), size, found[0].stored_path)


class Uploads:
    """The last few uploaded pictures (decoded, in memory only), by a random token: a feedback round that starts
    from an upload names it by its token. The oldest are forgotten first."""

    def __init__(self, keep=16):
        self._pictures, self._keep, self._lock = collections.OrderedDict(), keep, threading.Lock()

    def keep(self, picture):
        token = secrets.token_urlsafe(12)
        with self._lock:
            self._pictures[token] = picture
            while len(self._pictures) > self._keep:
                self._pictures.popitem(last=False)
        return token

    def get(self, token):
        with self._lock:
            return self._pictures.get(token)


def grid_shape(layout):
    base = layout.removeprefix("global+")
    return {"2x2": [2, 2], "3x3": [3, 3]}.get(base)


def region_count(layout):
    return region_map(1, 1, layout)[1]


def makeup_parts(shares, hexes, smallest=0.005):
    """Colour make-up ``(K,)`` as [{"hex", "share"}], largest first, parts under ``smallest`` left out."""
    order = np.argsort(-shares, kind="stable")
    order = order[shares[order] >= smallest]
    return [{"hex": hexes[k], "share": s} for k, s in zip(order.tolist(), shares[order].tolist())]


@functools.lru_cache(maxsize=4)
def _words(rgb_bytes, layout):
    return words.Words(np.frombuffer(rgb_bytes, np.uint8).reshape(-1, 3), layout)


def words_for(rgb, layout):
    """The :class:`words.Words` of a codebook and layout (made once per codebook)."""
    return _words(np.ascontiguousarray(rgb, np.uint8).tobytes(), layout)


def image_card(info):
    """What a page or the API shows of an image anywhere (``path``: as stored, relative to the database's folder)."""
    return {"id": info.image_id, "path": info.stored_path, "name": os.path.basename(info.stored_path),
            "width": info.width, "height": info.height,
            "thumb": f"/image/{info.image_id}/thumb?v={str(info.sha256)[:12]}"}


def parent_of(path):
    head = path.rpartition("/")[0]
    return head or ("/" if path.startswith("/") else "")


def join(folder, name):
    if not folder:
        return name
    return folder + name if folder.endswith("/") else f"{folder}/{name}"


def parents(folder):
    """Breadcrumbs of a folder: [{"name", "folder"}] from the top."""
    crumbs, built = [], ""
    for part in ([""] if folder.startswith("/") else []) + [p for p in folder.split("/") if p]:
        built = join(built, part) if built or not folder.startswith("/") or part else "/"
        crumbs.append({"name": part or "/", "folder": built})
    return crumbs


# --- the app -----------------------------------------------------------------------------------------------------
def create_app(db_path, *, hosts=("127.0.0.1", "localhost"), max_upload_bytes=32 << 20,
               max_upload_pixels=50_000_000, thumbnails=None):
    """The Starlette app serving the index at ``db_path`` read only.

    hosts : the Host header values accepted (DNS rebinding: a page elsewhere cannot talk to this server by a name
        of its own that points here)
    max_upload_bytes, max_upload_pixels : limits of a search-by-upload
    thumbnails : folder of the thumbnail cache (default: ``<db_path>-thumbnails`` beside the database)
    """
    pages = Pages(db_path, max_upload_bytes=max_upload_bytes, max_upload_pixels=max_upload_pixels,
                  thumbnails=thumbnails)

    def html(name, status=200, **context):
        return HTMLResponse(templates().get_template(name).render(**context), status_code=status)

    def wants_json(request):
        return request.url.path.startswith("/api/")

    async def in_thread(function, *args):
        return await run_in_threadpool(function, *args)

    # pages
    async def home(request):
        folder = request.query_params.get("folder", "")
        page = page_number(request.query_params.get("page"))
        return html("collection.html", info=await in_thread(pages.info), **await in_thread(pages.folder, folder, page))

    async def image_page(request):
        data = await in_thread(pages.image, request.path_params["image_id"])
        return html("image.html", info=await in_thread(pages.info), image=data)

    async def search_page(request):
        info = await in_thread(pages.info)
        if request.method == "POST":
            data = await pages.upload(request)
        elif not any(k in request.query_params for k in ("like", "color", "pick", "layout")):
            return RedirectResponse("/example", 303)
        else:
            data = await in_thread(pages.search, request.query_params)
        return html("results.html", info=info, **data)

    async def form_page(request):
        name = request.url.path.strip("/")
        return html(f"{name}.html", info=await in_thread(pages.info), query=request.query_params)

    async def duplicates_page(request):
        return html("duplicates.html", info=await in_thread(pages.info),
                    **await in_thread(pages.duplicates, request.query_params))

    async def picture_of(request):
        image_id = request.path_params["image_id"]
        size = None if request.path_params["kind"] == "thumb" else VIEW_SIZE
        try:
            data = await in_thread(pages.thumbnail, image_id, size)
        except DecodeError as error:
            log.warning("cannot show image %s: %s", image_id, error)
            return Response(placeholder(), 404, media_type="image/svg+xml", headers={"Cache-Control": "no-store"})
        cache = "private, max-age=86400" if request.query_params.get("v") else "no-cache"
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": cache})

    # API
    async def api_info(request):
        return JSONResponse(await in_thread(pages.info))

    async def api_folder(request):
        return JSONResponse(await in_thread(pages.folder, request.query_params.get("folder", ""),
                                            page_number(request.query_params.get("page"))))

    async def api_image(request):
        return JSONResponse(await in_thread(pages.image, request.path_params["image_id"]))

    async def api_duplicates(request):
        return JSONResponse(await in_thread(pages.duplicates, request.query_params))

    async def api_search(request):
        if request.method == "POST":
            return JSONResponse(await pages.upload(request))
        return JSONResponse(await in_thread(pages.search, request.query_params))

    # errors: a clear page or JSON, a status, never a traceback
    async def failed(request, exc):
        if isinstance(exc, BodyTooLarge):
            status, message = 413, str(exc)
        elif isinstance(exc, BadRequest):
            status, message = exc.status, str(exc)
        elif isinstance(exc, HTTPException):
            status = exc.status_code
            message = {404: "no such page", 405: "this page does not take that method"}.get(status, exc.detail)
        elif isinstance(exc, DatabaseError):
            status, message = 503, f"the index cannot be read now: {exc}"
        elif isinstance(exc, CbirError):
            status, message = 400, str(exc)
        else:
            status, message = 500, "something went wrong on the server; its log says what"
        if wants_json(request):
            return JSONResponse({"error": message, "status": status}, status_code=status)
        return html("error.html", status=status, status_code=status, message=message)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        pages.library.close()

    routes = [
        Route("/", home),
        Route("/image/{image_id:int}", image_page),
        Route("/image/{image_id:int}/{kind:str}", picture_of),
        Route("/search", search_page, methods=["GET", "POST"]),
        Route("/duplicates", duplicates_page),
        Route("/example", form_page), Route("/colour", form_page), Route("/layout", form_page),
        Route("/api/info", api_info),
        Route("/api/folder", api_folder),
        Route("/api/images/{image_id:int}", api_image),
        Route("/api/search", api_search, methods=["GET", "POST"]),
        Route("/api/duplicates", api_duplicates),
        Mount("/static", StaticFiles(directory=os.path.join(HERE, "static")), name="static"),
    ]
    handlers = {kind: failed for kind in (Exception, HTTPException, CbirError, BadRequest, BodyTooLarge)}
    middleware = [Middleware(SecurityHeaders), Middleware(TrustedHostMiddleware, allowed_hosts=list(hosts)),
                  Middleware(LimitBody, max_bytes=max_upload_bytes + (64 << 10))]  # room for the form around it
    app = Starlette(routes=routes, exception_handlers=handlers, middleware=middleware, lifespan=lifespan)
    app.state.pages = pages
    return app


def page_number(value):
    if value in (None, ""):
        return 0
    if not value.isdigit() or not 1 <= int(value) <= 10**9:
        raise BadRequest(f"page must be a whole number from 1, got {value!r}")
    return int(value) - 1


def duplicates_params(params):
    """``(tier, threshold, page from 0)`` of a duplicates request (defaults 3, 1.0, 0), or BadRequest."""
    tier = params.get("tier") or "3"
    if tier not in ("1", "2", "3"):
        raise BadRequest(f"tier must be 1, 2 or 3, got {tier!r}")
    text = params.get("threshold") or "1"
    try:
        threshold = float(text)
    except ValueError:
        threshold = float("nan")
    if not 0 < threshold <= 4:  # nan and inf fail too
        raise BadRequest(f"threshold must be a number more than 0 and at most 4, got {text!r}")
    return int(tier), threshold, page_number(params.get("page"))


@functools.lru_cache(maxsize=1)
def placeholder():
    return (b'<svg xmlns="http://www.w3.org/2000/svg" width="240" height="180" viewBox="0 0 240 180">'
            b'<rect width="240" height="180" fill="#ddd"/><text x="120" y="95" font-family="sans-serif" '
            b'font-size="14" text-anchor="middle" fill="#666">cannot show this photo</text></svg>')
