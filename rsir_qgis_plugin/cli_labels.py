"""`rsir search` by labelled boxes (relevance feedback): --raster/--bbox (a positive), --positive and
--negative boxes, --labels files; the boxes used can be saved with --save-labels."""
from __future__ import annotations

import sys
from pathlib import Path

from .cli_boxes import labelled_box, require_crs
from .core.errors import RsirError
from .core.params import SearchParams


def feedback_query(args, params: SearchParams):
    """A search by labelled boxes: --raster/--bbox (a positive), --labels files, --positive/--negative."""
    from .core.feedback import search_feedback

    _refuse_bad_arguments(args)
    feedback = _labelled_boxes(args)
    result = search_feedback(args.index_dir, feedback, params)
    _report(result, args)
    return result


def _refuse_bad_arguments(args) -> None:
    """Arguments that cannot go together, and a --save-labels file that cannot be written: refused first."""
    from .core.atomic import output_target
    from .core.labels_io import labels_format

    if args.save_labels:
        labels_format(args.save_labels)  # refused before anything is searched
        output_target(args.save_labels, args.index_dir)
    if args.image is not None:
        raise RsirError("give either --image or labelled boxes (--positive, --negative, --labels), not both")
    if (args.raster is None) != (args.bbox is None):
        raise RsirError("--raster and --bbox go together: the box is then a positive example")


def _labelled_boxes(args):
    """The boxes of the --labels files, then those given on the command line; at least one positive."""
    from .core.examples import LabelledBox

    given = _given_boxes(args)
    feedback = _read_labels(args.labels)
    for raster, box, positive in given:
        feedback = feedback.with_box(LabelledBox(raster=str(raster), bbox=box, crs=args.crs,
                                                 positive=positive))
    if not feedback.positives():
        found = f" (found {len(feedback.negatives())} negative)" if feedback.boxes else ""
        raise RsirError("relevance feedback needs at least one positive box: give --positive "
                        f"RASTER:XMIN,YMIN,XMAX,YMAX, --raster with --bbox, or --labels with one{found}")
    return feedback


def _given_boxes(args) -> list[tuple[object, tuple[float, ...], bool]]:
    """(raster, box, positive) for --raster/--bbox, each --positive and each --negative, in that order;
    with --crs, each raster is checked to be one a box in that CRS can be placed on."""
    given = [(args.raster, tuple(args.bbox), True)] if args.raster is not None else []
    given += [(*labelled_box("--positive", text), True) for text in args.positive]
    given += [(*labelled_box("--negative", text), False) for text in args.negative]
    if args.crs:
        for raster in dict.fromkeys(raster for raster, _, _ in given):
            require_crs(Path(raster), args.crs)
    return given


def _read_labels(paths: list[Path]):
    """The labelled boxes of every --labels file, merged; a note for each feature left out."""
    from .core.examples import Feedback
    from .core.labels_io import load_labels

    feedback = Feedback()
    for path in paths:
        read = load_labels(path)
        for reason in read.skipped:
            print(f"rsir: note: {path}: {reason}; left out", file=sys.stderr)
        feedback = feedback.merged(read.feedback)
    return feedback


def _report(result, args) -> None:
    """How the hits were ranked, on stderr; the labelled boxes used written to --save-labels."""
    from .core.labels_io import write_labels

    used = result.feedback
    how = ("a classifier (scores are its probability)" if result.scoring == "probability"
           else "the mean of the examples (scores are cosine similarities)")
    print(f"rsir: note: ranked by {how} of {len(used.positives())} positive and {len(used.negatives())} "
          "negative example(s)", file=sys.stderr)
    if args.save_labels:
        path = write_labels(used, args.save_labels, index_dir=args.index_dir)
        print(f"{len(used.boxes)} labelled boxes written to {path}", file=sys.stderr)
