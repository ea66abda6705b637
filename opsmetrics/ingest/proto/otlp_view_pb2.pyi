from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExportView(_message.Message):
    __slots__ = ("resource_metrics",)
    RESOURCE_METRICS_FIELD_NUMBER: _ClassVar[int]
    resource_metrics: _containers.RepeatedCompositeFieldContainer[ResourceMetricsView]
    def __init__(self, resource_metrics: _Optional[_Iterable[_Union[ResourceMetricsView, _Mapping]]] = ...) -> None: ...

class ResourceMetricsView(_message.Message):
    __slots__ = ("resource", "scope_metrics")
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    SCOPE_METRICS_FIELD_NUMBER: _ClassVar[int]
    resource: ResourceView
    scope_metrics: _containers.RepeatedCompositeFieldContainer[ScopeMetricsView]
    def __init__(self, resource: _Optional[_Union[ResourceView, _Mapping]] = ..., scope_metrics: _Optional[_Iterable[_Union[ScopeMetricsView, _Mapping]]] = ...) -> None: ...

class ResourceView(_message.Message):
    __slots__ = ("attributes",)
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    attributes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, attributes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ScopeMetricsView(_message.Message):
    __slots__ = ("metrics",)
    METRICS_FIELD_NUMBER: _ClassVar[int]
    metrics: _containers.RepeatedCompositeFieldContainer[MetricView]
    def __init__(self, metrics: _Optional[_Iterable[_Union[MetricView, _Mapping]]] = ...) -> None: ...

class MetricView(_message.Message):
    __slots__ = ("name", "description", "unit", "gauge", "sum", "histogram", "exponential_histogram", "summary")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    GAUGE_FIELD_NUMBER: _ClassVar[int]
    SUM_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_FIELD_NUMBER: _ClassVar[int]
    EXPONENTIAL_HISTOGRAM_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    unit: str
    gauge: NumbersView
    sum: NumbersView
    histogram: HistogramView
    exponential_histogram: PointsView
    summary: SummaryView
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., unit: _Optional[str] = ..., gauge: _Optional[_Union[NumbersView, _Mapping]] = ..., sum: _Optional[_Union[NumbersView, _Mapping]] = ..., histogram: _Optional[_Union[HistogramView, _Mapping]] = ..., exponential_histogram: _Optional[_Union[PointsView, _Mapping]] = ..., summary: _Optional[_Union[SummaryView, _Mapping]] = ...) -> None: ...

class NumbersView(_message.Message):
    __slots__ = ("data_points", "aggregation_temporality", "is_monotonic")
    DATA_POINTS_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_TEMPORALITY_FIELD_NUMBER: _ClassVar[int]
    IS_MONOTONIC_FIELD_NUMBER: _ClassVar[int]
    data_points: _containers.RepeatedCompositeFieldContainer[NumberPointView]
    aggregation_temporality: int
    is_monotonic: bool
    def __init__(self, data_points: _Optional[_Iterable[_Union[NumberPointView, _Mapping]]] = ..., aggregation_temporality: _Optional[int] = ..., is_monotonic: _Optional[bool] = ...) -> None: ...

class NumberPointView(_message.Message):
    __slots__ = ("attributes", "time_unix_nano", "as_double", "as_int", "flags")
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    AS_DOUBLE_FIELD_NUMBER: _ClassVar[int]
    AS_INT_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    attributes: _containers.RepeatedScalarFieldContainer[bytes]
    time_unix_nano: int
    as_double: float
    as_int: int
    flags: int
    def __init__(self, attributes: _Optional[_Iterable[bytes]] = ..., time_unix_nano: _Optional[int] = ..., as_double: _Optional[float] = ..., as_int: _Optional[int] = ..., flags: _Optional[int] = ...) -> None: ...

class HistogramView(_message.Message):
    __slots__ = ("data_points", "aggregation_temporality")
    DATA_POINTS_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_TEMPORALITY_FIELD_NUMBER: _ClassVar[int]
    data_points: _containers.RepeatedCompositeFieldContainer[HistogramPointView]
    aggregation_temporality: int
    def __init__(self, data_points: _Optional[_Iterable[_Union[HistogramPointView, _Mapping]]] = ..., aggregation_temporality: _Optional[int] = ...) -> None: ...

class HistogramPointView(_message.Message):
    __slots__ = ("attributes", "time_unix_nano", "count", "sum", "bucket_counts", "explicit_bounds", "flags")
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SUM_FIELD_NUMBER: _ClassVar[int]
    BUCKET_COUNTS_FIELD_NUMBER: _ClassVar[int]
    EXPLICIT_BOUNDS_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    attributes: _containers.RepeatedScalarFieldContainer[bytes]
    time_unix_nano: int
    count: int
    sum: float
    bucket_counts: _containers.RepeatedScalarFieldContainer[int]
    explicit_bounds: _containers.RepeatedScalarFieldContainer[float]
    flags: int
    def __init__(self, attributes: _Optional[_Iterable[bytes]] = ..., time_unix_nano: _Optional[int] = ..., count: _Optional[int] = ..., sum: _Optional[float] = ..., bucket_counts: _Optional[_Iterable[int]] = ..., explicit_bounds: _Optional[_Iterable[float]] = ..., flags: _Optional[int] = ...) -> None: ...

class PointsView(_message.Message):
    __slots__ = ("data_points",)
    DATA_POINTS_FIELD_NUMBER: _ClassVar[int]
    data_points: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, data_points: _Optional[_Iterable[bytes]] = ...) -> None: ...

class SummaryView(_message.Message):
    __slots__ = ("data_points",)
    DATA_POINTS_FIELD_NUMBER: _ClassVar[int]
    data_points: _containers.RepeatedCompositeFieldContainer[SummaryPointView]
    def __init__(self, data_points: _Optional[_Iterable[_Union[SummaryPointView, _Mapping]]] = ...) -> None: ...

class SummaryPointView(_message.Message):
    __slots__ = ("attributes", "time_unix_nano", "count", "sum", "quantile_values", "flags")
    class ValueAtQuantile(_message.Message):
        __slots__ = ("quantile", "value")
        QUANTILE_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        quantile: float
        value: float
        def __init__(self, quantile: _Optional[float] = ..., value: _Optional[float] = ...) -> None: ...
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SUM_FIELD_NUMBER: _ClassVar[int]
    QUANTILE_VALUES_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    attributes: _containers.RepeatedScalarFieldContainer[bytes]
    time_unix_nano: int
    count: int
    sum: float
    quantile_values: _containers.RepeatedCompositeFieldContainer[SummaryPointView.ValueAtQuantile]
    flags: int
    def __init__(self, attributes: _Optional[_Iterable[bytes]] = ..., time_unix_nano: _Optional[int] = ..., count: _Optional[int] = ..., sum: _Optional[float] = ..., quantile_values: _Optional[_Iterable[_Union[SummaryPointView.ValueAtQuantile, _Mapping]]] = ..., flags: _Optional[int] = ...) -> None: ...
