"""The live Jupyter view of `featviz.explore`: an anywidget around the webgl page's code.

The widget runs the same page code as a saved ``renderer="webgl"`` page
(`featviz._explorer_big`): regl-scatterplot from the jupyter-scatter wheel (featviz's
canvas drawer where WebGL runs in software) plus ``_explorer_big.js``. The points travel
once as one binary buffer; a sheet of thumbnails or click-through images is made (or
taken from the view's sprites) and sent when the page first needs it; each selection is
sent back and lands in ``ExploreView.selected``. anywidget is imported by `make_widget`,
never by ``import featviz``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from featviz._explorer_big import CSS, bundle, meta, pack, page_code, sheet_bytes, sheet_keys

if TYPE_CHECKING:
    from featviz.explorer import ExploreView

__all__ = ["make_widget", "on_message"]

_INSTALL = "pip install 'featviz[webgl]' (or pip install anywidget jupyter-scatter)"

_WIDGET_JS = """
const MIMES = { webp: "image/webp", jpeg: "image/jpeg", png: "image/png" };
export default {
  async render({ model, el }) {
    const meta = model.get("meta");
    const dv = model.get("points");
    const raw = new Uint8Array(dv.buffer.slice(dv.byteOffset, dv.byteOffset + dv.byteLength));
    const pending = new Map();
    model.on("msg:custom", (msg, buffers) => {
      const wait = pending.get(`${msg.key}/${msg.j}`);
      if (msg.type !== "sheet" || !wait) return;
      const type = MIMES[meta.sheets[msg.key].ext];
      wait.resolve(URL.createObjectURL(new Blob([buffers[0]], { type })));
    });
    const host = {
      sheetUrl: (key, j) => {
        const id = `${key}/${j}`;
        if (!pending.has(id)) {
          let resolve;
          const promise = new Promise((r) => { resolve = r; });
          pending.set(id, { promise, resolve });
          model.send({ type: "sheet", key, j });
        }
        return pending.get(id).promise;
      },
      onSelect: (ids) => { model.set("selected", ids); model.save_changes(); },
    };
    const view = await featvizView(el, meta, raw, host);
    el.featviz = view;  // the scatterplot and timings, for debugging and tests
    return () => view.sp.destroy();
  },
};
"""


def on_message(view: ExploreView, widget: Any, content: Any, buffers: Any) -> None:
    """Answer the page's request for a sheet: ``{"type": "sheet", "key": k, "j": j}``."""
    if not isinstance(content, dict) or content.get("type") != "sheet":
        return
    key, j = content.get("key"), content.get("j")
    keys = sheet_keys(view)
    if key not in keys or not isinstance(j, int) or not 0 <= j < keys[key]["sheets"]:
        return
    widget.send({"type": "sheet", "key": key, "j": j}, [sheet_bytes(view, key, j)])


def make_widget(view: ExploreView) -> Any:
    """A new live widget of ``view``; its ``selected`` trait follows the page's selection.

    Args:
        view: The view.

    Returns:
        An ``anywidget.AnyWidget`` with the traits ``meta`` (dict), ``points`` (bytes)
        and ``selected`` (list of int: the selected indices, sorted).

    Raises:
        ImportError: anywidget or jupyter-scatter is not installed.
    """
    try:
        import anywidget
        import traitlets
    except ImportError as exc:
        raise ImportError(f"ExploreView.show needs anywidget: {_INSTALL}.") from exc

    class ExploreWidget(anywidget.AnyWidget):
        _esm = bundle() + "\n" + page_code() + "\n" + _WIDGET_JS
        _css = CSS
        meta = traitlets.Dict().tag(sync=True)
        points = traitlets.Bytes().tag(sync=True)
        selected = traitlets.List(traitlets.Int()).tag(sync=True)

    raw, layout = pack(view.data, view.class_names)
    info = meta(view, layout)
    widget = ExploreWidget(meta=info, points=raw, selected=[])
    widget.on_msg(lambda w, content, buffers: on_message(view, w, content, buffers))
    return widget
