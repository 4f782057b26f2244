"""Evaluation of region search on COCO-style datasets: loading ground truth, matching ranked
regions, precision/recall@k, AP, the segmentation ceiling, and reports.

Pure numpy + pycocotools (matplotlib only for plots, imported when plotting); no torch.
"""

from .coco import Category, CocoDataset, CocoImage, GtInstance, dataset_has_masks, load_coco, parse_coco
from .metrics import (
    AP_METHOD,
    FALSE_POSITIVE,
    HIT,
    IGNORED,
    CategoryCeiling,
    CategoryResult,
    CeilingResult,
    EvalSummary,
    MatchResult,
    RankedRegion,
    average_precision,
    count_gt,
    evaluate_category,
    match_ranked,
    match_ranked_detailed,
    pr_curve,
    precision_at_k,
    recall_at_k,
    segmentation_ceiling,
    summarize,
)
from .report import format_table, plot_category_bars, plot_pr_curves, print_table, write_json, write_plots

__all__ = [
    "AP_METHOD", "FALSE_POSITIVE", "HIT", "IGNORED",
    "Category", "CategoryCeiling", "CategoryResult", "CeilingResult", "CocoDataset", "CocoImage",
    "EvalSummary", "GtInstance", "MatchResult", "RankedRegion",
    "average_precision", "count_gt", "dataset_has_masks", "evaluate_category", "format_table",
    "load_coco", "match_ranked", "match_ranked_detailed", "parse_coco", "plot_category_bars",
    "plot_pr_curves", "pr_curve", "precision_at_k", "print_table", "recall_at_k",
    "segmentation_ceiling", "summarize", "write_json", "write_plots",
]
