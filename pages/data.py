"""Data & model: choose the data set and the model; see the data's counts and sample pairs."""

from __future__ import annotations

import streamlit as st

from fairvlm import jobs, paths
from fairvlm.data import PairTable, small_group_warnings
from fairvlm.data.summary import DEFAULT_MIN_GROUP_SIZE
from fairvlm.ui import cache, current, data_table, gallery, state, tables
from fairvlm.ui.architecture import architecture_input
from fairvlm.ui.feedback import user_errors
from fairvlm.ui.sidebar import SYNTHETIC_NOTE
from fairvlm.ui.state import AUTO_DEVICE, DataChoice, ModelChoice
from fairvlm.ui.text import plain
from fairvlm.uploads import discard_upload, max_upload_bytes, save_upload

SOURCES = {
    "demo": "Built-in demo",
    "server": "Folder or manifest on this server",
    "upload": "Upload a zip or CSV",
}
PRETRAINED_SPECS = ("ViT-B-16:openai", "ViT-B-32:openai", "ViT-L-14:openai")
OTHER_SPEC = "other"
SAMPLES_SHOWN = 8
ANY = "any"


def main() -> None:
    st.title("Data & model")
    st.caption("Choose the image-text pairs to audit and the CLIP-style model to audit them "
               "with. Everything below describes the data set in use.")
    data_column, model_column = st.columns([3, 2], gap="large")
    with data_column:
        choose_data()
    with model_column:
        choose_model()
    table = None
    with user_errors():
        table = current.current_table()
    if table is None:
        return
    st.divider()
    overview(table)
    counts(table)
    samples(table)


def choose_data() -> None:
    st.subheader("Data set")
    kinds = list(SOURCES)
    kind = st.radio("Source", kinds, format_func=SOURCES.get, horizontal=True,
                    index=kinds.index(state.data_choice().kind), key="data.source")
    if kind == "demo":
        st.caption("A SYNTHETIC data set in the Harvard-FairVLMed layout: fundus-like images, "
                   "clinical-style notes and demographic attributes, with designed group gaps "
                   "and known bad pairs. Generated on first use.")
        if state.data_choice().kind != "demo" and st.button("Use the demo", type="primary"):
            _switch_to(DataChoice())
    elif kind == "server":
        path = st.text_input("Path", key="data.server_path",
                             placeholder="/data/FairVLMed  or  /data/pairs/manifest.csv")
        attributes = _attribute_input("data.server_attributes")
        roots = ", ".join(f"`{plain(str(root))}`" for root in paths.data_roots())
        st.caption(f"A Harvard-FairVLMed folder, a folder holding manifest.csv, or a CSV/Parquet "
                   f"manifest. Allowed roots: {roots} (set FAIRVLM_DATA_ROOTS to change them).")
        if st.button("Load", key="data.load_server", type="primary", disabled=not path.strip()):
            _switch_to(DataChoice("server", path.strip(), attributes))
    else:
        upload = st.file_uploader("Zip or CSV", type=["zip", "csv"], key="data.upload")
        attributes = _attribute_input("data.upload_attributes")
        limit_mb = st.get_option("server.maxUploadSize")
        with user_errors():
            extracted_gib = max_upload_bytes() / 1024**3
            st.caption(f"A zip of a Harvard-FairVLMed folder or of a folder with manifest.csv "
                       f"and its images, or a CSV manifest whose image paths lie in the allowed "
                       f"roots. Up to {limit_mb} MB per upload and {extracted_gib:.3g} GiB "
                       "extracted.")
        if st.button("Load upload", key="data.load_upload", type="primary",
                     disabled=upload is None):
            with user_errors():
                stored = save_upload(upload.name, upload)
                if not _switch_to(DataChoice("upload", str(stored), attributes,
                                             origin=upload.name)):
                    discard_upload(stored)  # nothing to keep from an upload that cannot load


def _attribute_input(key: str) -> tuple[str, ...]:
    raw = st.text_input("Attribute columns (manifests only)", key=key,
                        placeholder="race, sex, age_group",
                        help="Columns of the manifest holding protected attributes, comma "
                        "separated. A Harvard-FairVLMed folder brings its own.")
    return tuple(name.strip() for name in raw.split(",") if name.strip())


def _switch_to(choice: DataChoice) -> bool:
    """Load ``choice`` and make it the data set in use; on failure keep the previous one.

    Returns whether it loaded (a failure is shown as one ``st.error`` line).
    """
    with user_errors():
        table = current.load_choice(choice)
        state.set_data_choice(choice)
        st.success(f"Loaded {plain(table.name)}: {len(table):,} pairs.",
                   icon=":material/check_circle:")
        return True
    return False


def choose_model() -> None:
    st.subheader("Model")
    chosen = state.model_choice()
    finished = _finished_run_checkpoints()
    options = ["demo", *PRETRAINED_SPECS, *finished, OTHER_SPEC]
    labels = {"demo": "demo (small CLIP trained on the demo data)", **finished,
              OTHER_SPEC: "other: type a spec or a checkpoint path"}
    selected = st.selectbox("Model", options, format_func=lambda o: labels.get(o, o),
                            index=options.index(chosen.spec) if chosen.spec in options
                            else options.index(OTHER_SPEC), key="model.preset")
    spec, arch = selected, None
    if selected == OTHER_SPEC:
        spec = st.text_input("Spec", key="model.spec", value=chosen.spec
                             if chosen.spec not in options else "",
                             placeholder="hf-hub:ORG/NAME, ARCH:TAG or /path/model.safetensors")
        arch = architecture_input(chosen.arch, key="model.arch")
    devices = [AUTO_DEVICE, *cache.available_devices()]
    device = st.selectbox("Device", devices, key="model.device",
                          index=devices.index(chosen.device) if chosen.device in devices else 0,
                          help="auto: the first GPU if there is one, else the CPU.")
    st.caption("open_clip and hf-hub weights are downloaded on first use (this needs the "
               "network); the demo model is trained on the demo data the first time (about 2 "
               "minutes on 2 CPU cores).")
    if st.button("Load model", key="model.load", type="primary", disabled=not spec.strip()):
        with user_errors():  # on failure the model in use stays the previous one
            current.use_model(ModelChoice(spec.strip(), device, arch))
    loaded = state.loaded_model()
    if loaded is not None:
        st.caption(f"In use: {plain(loaded.spec)} · {plain(loaded.arch)} on {loaded.device} · "
                   f"weights `{loaded.fingerprint[:16]}`")


def _finished_run_checkpoints() -> dict[str, str]:
    """Spec (checkpoint path) -> label for the selected checkpoint of every finished run."""
    return {str(run.checkpoint): run.label for run in jobs.finished_runs()}


def overview(table: PairTable) -> None:
    loaded = state.loaded_data()
    st.header(plain(loaded.name if loaded else table.name))
    if loaded is not None and loaded.synthetic:
        st.info(SYNTHETIC_NOTE, icon=":material/science:")
    summary = cache.table_summary(table.fingerprint(), table)
    per_split = tables.split_counts(summary).set_index("split")
    tiles = st.columns(5)
    tiles[0].metric("Pairs", f"{len(table):,}")
    for tile, split, title in zip(tiles[1:4], ("train", "val", "test"),
                                  ("Train", "Validation", "Test"), strict=True):
        tile.metric(title, f"{int(per_split['n'].get(split, 0)):,}")
    tiles[4].metric("Positives", f"{int(per_split.loc['total', 'positives']):,}",
                    help="Pairs with label 1.")
    with st.expander("Where these data came from"):
        st.markdown("\n".join(f"- {plain(part)}" for part in table.source.split("; ")))
        st.caption(f"Fingerprint `{table.fingerprint()}` · {len(table.attributes)} protected "
                   "attribute(s)")
    for warning in table.warnings:
        st.warning(plain(warning), icon=":material/warning:")


def counts(table: PairTable) -> None:
    st.subheader("Counts per split and group")
    st.caption("n: pairs; positives: pairs with label 1; prevalence: positives / n; share: "
               "the group's part of the split.")
    summary = cache.table_summary(table.fingerprint(), table)
    left, right = st.columns([3, 5], gap="large")
    with left:
        data_table.show(tables.split_counts(summary),
                     column_config=_count_columns("split"))
    with right:
        if not table.attributes:
            st.info("No protected attributes: name the attribute columns when loading a "
                    "manifest.")
            return
        controls = st.columns(2)
        split = controls[0].selectbox("Split", tables.SPLIT_CHOICES, key="data.counts.split")
        min_n = controls[1].number_input("Warn below n", min_value=1,
                                         value=DEFAULT_MIN_GROUP_SIZE, key="data.counts.min_n")
        for tab, name in zip(st.tabs(list(table.attributes)), table.attributes, strict=True):
            with tab:
                data_table.show(tables.group_counts(summary, name, split),
                             column_config=_count_columns("group"))
        lines = small_group_warnings(tables.in_split(summary, split), min_n=int(min_n))
        if lines:
            st.warning(f"{len(lines)} group-split combination(s) are small or have one class "
                       "only: metrics on them will be noise-level or undefined.",
                       icon=":material/warning:")
            with st.expander("Which groups"):
                st.markdown("\n".join(f"- {plain(line)}" for line in lines))


def _count_columns(first: str) -> dict:
    return {
        first: st.column_config.TextColumn(first.capitalize()),
        "n": st.column_config.NumberColumn("n", format="localized"),
        "positives": st.column_config.NumberColumn("Positives", format="localized"),
        "prevalence": st.column_config.NumberColumn("Prevalence", format="percent"),
        "share": st.column_config.NumberColumn("Share", format="percent"),
    }


def samples(table: PairTable) -> None:
    st.subheader("Sample pairs")
    seed_key = "data.samples.seed"
    st.session_state.setdefault(seed_key, 0)
    controls = st.columns([2, 2, 2, 2, 1], vertical_alignment="bottom")
    split = controls[0].selectbox("Split", [ANY, *tables.SPLIT_CHOICES[1:]],
                                  key="data.samples.split")
    attribute = controls[1].selectbox("Attribute", [ANY, *table.attributes],
                                      key="data.samples.attribute")
    code = None
    if attribute != ANY:
        groups = table.attribute(attribute)
        codes = sorted({int(c) for c in table.group_codes(attribute)})
        chosen = controls[2].selectbox("Group", [ANY, *codes], key=f"data.samples.{attribute}",
                                       format_func=lambda c: c if c == ANY
                                       else groups.group_name(c))
        code = None if chosen == ANY else int(chosen)
    label = controls[3].selectbox("Label", [ANY, 1, 0], key="data.samples.label",
                                  format_func=lambda v: gallery.LABEL_NAMES.get(v, v))
    controls[4].button("Shuffle", key="data.samples.shuffle", icon=":material/shuffle:",
                       on_click=_next_seed, args=(seed_key,))
    rows = gallery.pick_samples(
        table, n=SAMPLES_SHOWN, seed=st.session_state[seed_key],
        split=None if split == ANY else split, attribute=None if attribute == ANY else attribute,
        code=code, label=None if label == ANY else int(label))
    if rows.empty:
        st.info("No pairs match these filters.")
        return
    gallery.render_cards(table, rows)


def _next_seed(key: str) -> None:
    st.session_state[key] += 1


main()
