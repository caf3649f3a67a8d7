"""FilterQuery: the query DSL of subscriptions and searches (docs/filterquery.md).

    node = parse_filter({"priority": {"eq": "high"}}, schema)   # validate once
    compile_matcher(node)(data) -> bool                           # router
    to_sql(node, "sqlite" | "postgres") -> (sql, params)          # SQL adapters
    to_elasticsearch(node) -> query dict                          # ES adapter
    filter_to_dict(node) -> canonical JSON form

The backends agree on every input (tests/unit/test_filterquery_differential.py).
"""

from nexxus.core.filterquery.ast import (
    COMPARE_OPS,
    And,
    AuthContext,
    Compare,
    FilterNode,
    In,
    Or,
    Scalar,
    filter_to_dict,
    iter_leaves,
)
from nexxus.core.filterquery.elasticsearch import PRESENT_FIELD, to_elasticsearch
from nexxus.core.filterquery.matcher import Matcher, compile_matcher
from nexxus.core.filterquery.parse import MAX_IN_VALUES, parse_filter
from nexxus.core.filterquery.sql import Dialect, sql_path_expr, sql_sort_exprs, to_sql

__all__ = [
    "COMPARE_OPS",
    "MAX_IN_VALUES",
    "PRESENT_FIELD",
    "And",
    "AuthContext",
    "Compare",
    "Dialect",
    "FilterNode",
    "In",
    "Matcher",
    "Or",
    "Scalar",
    "compile_matcher",
    "filter_to_dict",
    "iter_leaves",
    "parse_filter",
    "sql_path_expr",
    "sql_sort_exprs",
    "to_elasticsearch",
    "to_sql",
]
