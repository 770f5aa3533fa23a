"""Bad pairs: the pairs whose note may not belong to their image, ranked, explained, decided."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from fairvlm import runs
from fairvlm.data import PairTable
from fairvlm.data.table import SPLITS
from fairvlm.decisions import DECISIONS, DecisionFile
from fairvlm.errors import DataError, FairVLMError
from fairvlm.models import LoadedModel
from fairvlm.pair_issues import IssueSettings, explain
from fairvlm.train.training_data import excluded_training_rows
from fairvlm.ui import audit_view, cache, current, data_table, gallery
from fairvlm.ui import pair_browser as browser
from fairvlm.ui.feedback import show_error, user_errors
from fairvlm.ui.pair_figures import makeup_figure, trajectory_figure
from fairvlm.ui.text import plain

ANY = "any"
NO_RUN = ""
PAGE_SIZES = (10, 25, 50)
TILE_LABELS = {"bad_pair": "Bad pairs (combined)", "mismatch": "Mismatch",
               "label_disagreement": "Label disagreement", "faulty": "DBPM faulty",
               "noisy": "DBPM noisy"}
SAMPLED_COLUMNS = ("loss", "rank", "margin")  # against a sample of notes in a large split
DECISION_LABELS = {"keep": "Keep", "exclude": "Exclude", "wrong_note": "Wrong note"}
DECISION_HELP = ("Keep: the pair is fine. Exclude: leave it out of the next fine-tune's "
                 "training for any reason (an unreadable image, a duplicate). Wrong note: the "
                 "note does not describe this image; also left out of training, and recorded "
                 "as a note error in the decisions CSV. Validation and test pairs stay "
                 "evaluated either way.")
SCORE_LINES = (("similarity", "similarity", ".3f"), ("loss", "loss", ".3g"),
               ("rank", "true-note rank", "d"), ("margin", "margin", ".3f"),
               ("image_probability", "p(glaucoma) image", ".2f"),
               ("note_probability", "p(glaucoma) note", ".2f"),
               ("bad_pair_score", "bad-pair score", ".2f"))


def main() -> None:
    st.title("Bad pairs")
    st.caption("Image-text pairs whose note may not describe their image, ranked by the "
               "current checkpoint and, for a finished fine-tune run, by DBPM's loss history. "
               "Decide what happens to each: the exclusions go to the next fine-tune.")
    chosen = current.table_and_model()
    if chosen is None:
        return
    table, loaded = chosen
    run_path, settings = controls()
    frame = evidence = None
    with user_errors():
        frame, evidence = load(table, loaded, run_path, settings)
    if frame is None:
        return
    book = DecisionFile(table.fingerprint())
    with user_errors():
        overview(frame, book)
        chosen, sort_column, descending = filters(table, frame)
        positions = browser.order(frame, browser.select(frame, chosen), sort_column,
                                  descending=descending)
        makeup(table, frame, chosen)
        pair_list(table, frame, positions, evidence, settings, book, loaded)


def controls() -> tuple[str, IssueSettings]:
    """The run whose DBPM flags to add, and the detectors' flag thresholds."""
    finished = _finished_runs()
    left, middle, right = st.columns([2, 1, 1])
    run_path = left.selectbox(
        "Fine-tune run (DBPM flags)", [NO_RUN, *finished], key="bad_pairs.run",
        format_func=lambda p: finished.get(p, "none: the current checkpoint's scores only"),
        help="A finished run adds DBPM's flags and each training pair's loss across epochs.")
    percent = middle.slider("Flag the top", min_value=1, max_value=25, value=5, format="%d%%",
                            key="bad_pairs.fraction",
                             help="Share of each split flagged as mismatch and by the "
                                  "combined bad-pair score.")
    confidence = right.slider("Disagreement confidence", min_value=0.5, max_value=0.95,
                              value=0.8, step=0.05, key="bad_pairs.confidence",
                              help="Flag a label disagreement when it is at least as confident "
                                   "as c against 1 - c.")
    return run_path, IssueSettings(flag_fraction=percent / 100, confidence=float(confidence))


def _finished_runs() -> dict[str, str]:
    """Memory path -> label of every finished run that saved a DBPM memory."""
    found = {}
    for run in runs.list_runs():
        memory = runs.RunDir(run.path).memory_path
        if run.state == "done" and memory.is_file():
            found[str(memory)] = f"{run.name} ({run.updated[:16].replace('T', ' ')})"
    return found


def load(table: PairTable, loaded: LoadedModel, run_path: str, settings: IssueSettings
         ) -> tuple[pd.DataFrame, browser.RunEvidence | None]:
    """The browser frame (cached) and the chosen run's evidence."""
    prompts = browser.prompts_key(audit_view.chosen_prompts(loaded))
    with st.spinner(f"Scoring {len(table):,} pairs with the current checkpoint ..."):
        scores = browser.cached_scores(table.fingerprint(), loaded.fingerprint, prompts,
                                       table, loaded)
    key = browser.run_key(None)
    evidence = None
    if run_path:
        try:
            key = browser.run_key(Path(run_path))
        except FileNotFoundError:
            raise DataError(f"{run_path}: the run's memory file is gone; expected the "
                            "memory.npz of a finished run") from None
        evidence = browser.cached_run(*key)
    frame = browser.cached_frame(table.fingerprint(), loaded.fingerprint, prompts, key,
                                 settings.flag_fraction, settings.confidence, table, scores,
                                 evidence)
    return frame, evidence


def overview(frame: pd.DataFrame, book: DecisionFile) -> None:
    kinds = [kind for kind in browser.flag_kinds(frame)
             if kind not in (browser.ANY_FLAG, browser.ALL_PAIRS)]
    tiles = st.columns(1 + len(kinds))
    tiles[0].metric("Pairs", f"{len(frame):,}")
    for tile, kind in zip(tiles[1:], kinds, strict=True):
        tile.metric(TILE_LABELS[kind], f"{int(browser.flag_mask(frame, kind).sum()):,}",
                    help=f"Pairs flagged: {browser.FLAG_KINDS[kind]}.")
    decided = book.decisions()
    exclusions = book.exclusions()
    line, button = st.columns([4, 1], vertical_alignment="center")
    counts = ", ".join(f"{sum(v == d for v in decided.values())} {DECISION_LABELS[d].lower()}"
                       for d in DECISIONS)
    left_out = excluded_training_rows(frame, exclusions)[1]
    in_training, evaluated = left_out["train"], left_out["evaluated"]
    plural = "" if in_training == 1 else "s"
    kept = (f"; {evaluated} marked validation or test pair(s) stay evaluated"
            if evaluated else "")
    line.success(f"**{in_training} training pair{plural} to leave out of the next "
                 f"fine-tune** ({counts}{kept}; saved in {plain(str(book.path))})",
                 icon=":material/playlist_remove:")
    button.download_button("Decisions CSV", book.to_csv(), file_name=book.path.name,
                           mime="text/csv", icon=":material/download:",
                           key="bad_pairs.download", disabled=not decided)


def filters(table: PairTable, frame: pd.DataFrame) -> tuple[browser.PairFilter, str, bool]:
    """The filter and sort widgets; returns the filter, the sort column and its direction."""
    row = st.columns([2, 1, 1, 2, 2])
    kind = row[0].selectbox("Flag", browser.flag_kinds(frame), key="bad_pairs.kind",
                            format_func=browser.FLAG_KINDS.get)
    splits = [split for split in SPLITS if (frame["split"] == split).any()]
    split = row[1].selectbox("Split", [ANY, *splits], key="bad_pairs.split")
    label = row[2].selectbox("Label", [ANY, 1, 0], key="bad_pairs.label",
                             format_func=lambda v: gallery.LABEL_NAMES.get(v, v))
    attribute = row[3].selectbox("Attribute", [ANY, *table.attributes],
                                 key="bad_pairs.attribute")
    group = None
    if attribute != ANY:
        names = table.attribute(attribute)
        codes = sorted({int(code) for code in table.group_codes(attribute)})
        chosen = row[4].selectbox("Group", [ANY, *codes], key=f"bad_pairs.group.{attribute}",
                                  format_func=lambda c: c if c == ANY else names.group_name(c))
        group = None if chosen == ANY else int(chosen)
    sort_row = st.columns([2, 1, 4])
    columns = [c for c in browser.SORT_COLUMNS if c in frame.columns]
    sort_column = sort_row[0].selectbox("Sort by", columns, key="bad_pairs.sort",
                                        format_func=browser.SORT_COLUMNS.get)
    descending = sort_row[1].toggle("Highest first", value=True, key="bad_pairs.descending")
    score_range = _range_slider(sort_row[2], frame, sort_column)
    return (browser.PairFilter(
        kind=kind, split=None if split == ANY else split, label=None if label == ANY else label,
        attribute=None if attribute == ANY else attribute, group=group,
        score_column=sort_column, score_range=score_range), sort_column, descending)


def _range_slider(slot, frame: pd.DataFrame, column: str) -> tuple[float, float] | None:
    """A range slider over ``column``'s values (``None`` when the column has no spread)."""
    values = frame[column].to_numpy(dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0 or values.min() == values.max():
        return None
    low, high = float(np.floor(values.min() * 1000) / 1000), float(
        np.ceil(values.max() * 1000) / 1000)
    key = f"bad_pairs.range.{column}"
    stored = st.session_state.get(key)
    if stored is not None and not (low <= stored[0] <= stored[1] <= high):
        del st.session_state[key]
    chosen = slot.slider(f"{browser.SORT_COLUMNS[column].capitalize()} range", low, high,
                         value=(low, high), key=key)
    return None if chosen == (low, high) else (float(chosen[0]), float(chosen[1]))


def makeup(table: PairTable, frame: pd.DataFrame, chosen: browser.PairFilter) -> None:
    """Group make-up of the flagged pairs against the base rate."""
    with st.expander("Who is flagged: group make-up against the base rate", expanded=False):
        attribute = chosen.attribute or st.selectbox("Attribute", list(table.attributes),
                                                     key="bad_pairs.makeup.attribute")
        if attribute is None:
            st.info("These data have no protected attributes.")
            return
        kind = browser.ANY_FLAG if chosen.kind == browser.ALL_PAIRS else chosen.kind
        shares = browser.group_makeup(frame, browser.scope_mask(frame, chosen),
                                      browser.flag_mask(frame, kind),
                                      table.attribute(attribute))
        st.caption(f"Pairs flagged as {browser.FLAG_KINDS[kind]} among the pairs matching the "
                   "split, label and range filters. A group whose share of the flagged pairs "
                   "exceeds its share of all pairs is flagged more often than its size "
                   "predicts.")
        left, right = st.columns(2)
        data_table.show(shares, where=left, column_config={
            column: st.column_config.NumberColumn(format="percent")
            for column in ("flag rate", "share of flagged", "share of all")})
        right.plotly_chart(makeup_figure(shares, attribute), key="bad_pairs.makeup.figure")


def pair_list(table: PairTable, frame: pd.DataFrame, positions: np.ndarray,
              evidence: browser.RunEvidence | None, settings: IssueSettings,
              book: DecisionFile, loaded: LoadedModel) -> None:
    """One page of pair cards, with the pager."""
    if positions.size == 0:
        st.info("No pairs match these filters.")
        return
    size_column, page_column, count_column = st.columns([1, 1, 4],
                                                        vertical_alignment="bottom")
    size = size_column.selectbox("Per page", PAGE_SIZES, key="bad_pairs.page_size")
    pages = browser.page_count(positions.size, size)
    if st.session_state.get("bad_pairs.page", 1) > pages:
        st.session_state["bad_pairs.page"] = 1
    number = page_column.number_input(f"Page (of {pages:,})", min_value=1, max_value=pages,
                                      key="bad_pairs.page")
    shown = browser.page(positions, int(number), size)
    first = (int(number) - 1) * size + 1
    count_column.caption(f"Pairs {first:,}–{first + len(shown) - 1:,} of {positions.size:,} "
                         f"matching ({len(frame):,} in all)")
    decided = book.decisions()
    for _, row in frame.iloc[shown].iterrows():
        card(table, row, decided.get(row["id"]), evidence, settings, book, loaded)


def card(table: PairTable, row: pd.Series, decision: str | None,
         evidence: browser.RunEvidence | None, settings: IssueSettings, book: DecisionFile,
         loaded: LoadedModel) -> None:
    """Image, note, attributes, scores, why flagged, and the decision of one pair."""
    pair_id = row["id"]
    with st.container(border=True):
        image_column, text_column, score_column = st.columns([1, 3, 2], gap="medium")
        try:
            image_column.image(cache.thumbnail(str(row["image"]), table.fingerprint()),
                               width="stretch")
        except DataError as error:
            image_column.warning(plain(str(error)), icon=":material/broken_image:")
        text_column.markdown(f"**{plain(pair_id)}** · {row['split']} · "
                             f"{gallery.LABEL_NAMES[int(row['label'])]}")
        if table.attributes:
            text_column.caption(plain(gallery.attribute_line(table, row)))
        text_column.markdown(plain(row["text"]) or "*(empty note)*")
        reasons = explain(row.to_dict(), settings)
        text_column.markdown("\n".join(f"- {plain(reason)}" for reason in reasons)
                             if reasons else "*Not flagged.*")
        score_column.markdown("  \n".join(_score_line(row, column, label, spec)
                                          for column, label, spec in SCORE_LINES))
        key = f"bad_pairs.decision.{pair_id}"
        score_column.segmented_control(
            "Decision", DECISIONS, default=decision, key=key,
            format_func=DECISION_LABELS.get, on_change=_save_decision,
            args=(book, pair_id, key, loaded.fingerprint), help=DECISION_HELP)
        if evidence is not None and not pd.isna(row.get("dbpm_mean_loss")):
            with st.expander("Loss across epochs (DBPM)"):
                st.plotly_chart(trajectory_figure(evidence, pair_id),
                                key=f"bad_pairs.trajectory.{pair_id}")


def _score_line(row: pd.Series, column: str, label: str, spec: str) -> str:
    value = row.get(column)
    if value is None or pd.isna(value):
        return f"{label}: undefined"
    line = f"{label}: **{format(int(value) if spec == 'd' else float(value), spec)}**"
    if column in SAMPLED_COLUMNS and bool(row.get("sampled", False)):
        line += f" (estimated from {int(row['negatives']):,} sampled notes)"
    return line


def _save_decision(book: DecisionFile, pair_id: str, key: str, model_fingerprint: str) -> None:
    """Write the decision the control now shows (none: forget it) to the decisions file."""
    try:
        book.set(pair_id, st.session_state.get(key), model_fingerprint=model_fingerprint)
    except FairVLMError as error:
        show_error(error)


main()
