from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImageFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_FORMAT_UNSPECIFIED: _ClassVar[ImageFormat]
    IMAGE_FORMAT_PNG: _ClassVar[ImageFormat]
    IMAGE_FORMAT_JPEG: _ClassVar[ImageFormat]
    IMAGE_FORMAT_RAW_UINT8: _ClassVar[ImageFormat]
    IMAGE_FORMAT_RAW_FLOAT32: _ClassVar[ImageFormat]
IMAGE_FORMAT_UNSPECIFIED: ImageFormat
IMAGE_FORMAT_PNG: ImageFormat
IMAGE_FORMAT_JPEG: ImageFormat
IMAGE_FORMAT_RAW_UINT8: ImageFormat
IMAGE_FORMAT_RAW_FLOAT32: ImageFormat

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "architecture", "z_dim", "num_classes", "w_dim", "num_ws", "img_resolution", "img_channels", "ws_layers", "noise_layers", "noise_modes", "execution_provider", "server_version", "png_encoder", "engine", "precision", "directions", "takes_transform")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    Z_DIM_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    W_DIM_FIELD_NUMBER: _ClassVar[int]
    NUM_WS_FIELD_NUMBER: _ClassVar[int]
    IMG_RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    IMG_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    WS_LAYERS_FIELD_NUMBER: _ClassVar[int]
    NOISE_LAYERS_FIELD_NUMBER: _ClassVar[int]
    NOISE_MODES_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    PNG_ENCODER_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    DIRECTIONS_FIELD_NUMBER: _ClassVar[int]
    TAKES_TRANSFORM_FIELD_NUMBER: _ClassVar[int]
    name: str
    architecture: str
    z_dim: int
    num_classes: int
    w_dim: int
    num_ws: int
    img_resolution: int
    img_channels: int
    ws_layers: _containers.RepeatedCompositeFieldContainer[WsLayer]
    noise_layers: _containers.RepeatedCompositeFieldContainer[NoiseLayer]
    noise_modes: _containers.RepeatedScalarFieldContainer[str]
    execution_provider: str
    server_version: str
    png_encoder: str
    engine: str
    precision: str
    directions: _containers.RepeatedCompositeFieldContainer[DirectionSet]
    takes_transform: bool
    def __init__(self, name: _Optional[str] = ..., architecture: _Optional[str] = ..., z_dim: _Optional[int] = ..., num_classes: _Optional[int] = ..., w_dim: _Optional[int] = ..., num_ws: _Optional[int] = ..., img_resolution: _Optional[int] = ..., img_channels: _Optional[int] = ..., ws_layers: _Optional[_Iterable[_Union[WsLayer, _Mapping]]] = ..., noise_layers: _Optional[_Iterable[_Union[NoiseLayer, _Mapping]]] = ..., noise_modes: _Optional[_Iterable[str]] = ..., execution_provider: _Optional[str] = ..., server_version: _Optional[str] = ..., png_encoder: _Optional[str] = ..., engine: _Optional[str] = ..., precision: _Optional[str] = ..., directions: _Optional[_Iterable[_Union[DirectionSet, _Mapping]]] = ..., takes_transform: _Optional[bool] = ...) -> None: ...

class DirectionSet(_message.Message):
    __slots__ = ("layer_range", "layers", "count", "eigenvalues")
    LAYER_RANGE_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    EIGENVALUES_FIELD_NUMBER: _ClassVar[int]
    layer_range: str
    layers: _containers.RepeatedScalarFieldContainer[int]
    count: int
    eigenvalues: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, layer_range: _Optional[str] = ..., layers: _Optional[_Iterable[int]] = ..., count: _Optional[int] = ..., eigenvalues: _Optional[_Iterable[float]] = ...) -> None: ...

class WsLayer(_message.Message):
    __slots__ = ("index", "layers", "resolution")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    index: int
    layers: _containers.RepeatedScalarFieldContainer[str]
    resolution: int
    def __init__(self, index: _Optional[int] = ..., layers: _Optional[_Iterable[str]] = ..., resolution: _Optional[int] = ...) -> None: ...

class NoiseLayer(_message.Message):
    __slots__ = ("layer", "resolution")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    layer: str
    resolution: int
    def __init__(self, layer: _Optional[str] = ..., resolution: _Optional[int] = ...) -> None: ...

class Tensor(_message.Message):
    __slots__ = ("shape", "data")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Truncation(_message.Message):
    __slots__ = ("psi", "cutoff")
    PSI_FIELD_NUMBER: _ClassVar[int]
    CUTOFF_FIELD_NUMBER: _ClassVar[int]
    psi: float
    cutoff: int
    def __init__(self, psi: _Optional[float] = ..., cutoff: _Optional[int] = ...) -> None: ...

class Latent(_message.Message):
    __slots__ = ("seed", "z", "class_index")
    SEED_FIELD_NUMBER: _ClassVar[int]
    Z_FIELD_NUMBER: _ClassVar[int]
    CLASS_INDEX_FIELD_NUMBER: _ClassVar[int]
    seed: int
    z: Tensor
    class_index: int
    def __init__(self, seed: _Optional[int] = ..., z: _Optional[_Union[Tensor, _Mapping]] = ..., class_index: _Optional[int] = ...) -> None: ...

class MapRequest(_message.Message):
    __slots__ = ("model", "latents", "truncation", "return_w", "cache", "edits")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LATENTS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATION_FIELD_NUMBER: _ClassVar[int]
    RETURN_W_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    EDITS_FIELD_NUMBER: _ClassVar[int]
    model: str
    latents: _containers.RepeatedCompositeFieldContainer[Latent]
    truncation: Truncation
    return_w: bool
    cache: bool
    edits: _containers.RepeatedCompositeFieldContainer[StyleEdit]
    def __init__(self, model: _Optional[str] = ..., latents: _Optional[_Iterable[_Union[Latent, _Mapping]]] = ..., truncation: _Optional[_Union[Truncation, _Mapping]] = ..., return_w: _Optional[bool] = ..., cache: _Optional[bool] = ..., edits: _Optional[_Iterable[_Union[StyleEdit, _Mapping]]] = ...) -> None: ...

class MapResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[MappedW]
    def __init__(self, results: _Optional[_Iterable[_Union[MappedW, _Mapping]]] = ...) -> None: ...

class MappedW(_message.Message):
    __slots__ = ("w", "w_id")
    W_FIELD_NUMBER: _ClassVar[int]
    W_ID_FIELD_NUMBER: _ClassVar[int]
    w: Tensor
    w_id: str
    def __init__(self, w: _Optional[_Union[Tensor, _Mapping]] = ..., w_id: _Optional[str] = ...) -> None: ...

class StyleSource(_message.Message):
    __slots__ = ("w_id", "w", "w_plus", "seed", "edits")
    W_ID_FIELD_NUMBER: _ClassVar[int]
    W_FIELD_NUMBER: _ClassVar[int]
    W_PLUS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    EDITS_FIELD_NUMBER: _ClassVar[int]
    w_id: str
    w: Tensor
    w_plus: Tensor
    seed: SeedSource
    edits: _containers.RepeatedCompositeFieldContainer[StyleEdit]
    def __init__(self, w_id: _Optional[str] = ..., w: _Optional[_Union[Tensor, _Mapping]] = ..., w_plus: _Optional[_Union[Tensor, _Mapping]] = ..., seed: _Optional[_Union[SeedSource, _Mapping]] = ..., edits: _Optional[_Iterable[_Union[StyleEdit, _Mapping]]] = ...) -> None: ...

class StyleEdit(_message.Message):
    __slots__ = ("direction", "layer_range", "alpha", "layers")
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    LAYER_RANGE_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    direction: int
    layer_range: str
    alpha: float
    layers: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, direction: _Optional[int] = ..., layer_range: _Optional[str] = ..., alpha: _Optional[float] = ..., layers: _Optional[_Iterable[int]] = ...) -> None: ...

class SeedSource(_message.Message):
    __slots__ = ("seed", "class_index", "truncation")
    SEED_FIELD_NUMBER: _ClassVar[int]
    CLASS_INDEX_FIELD_NUMBER: _ClassVar[int]
    TRUNCATION_FIELD_NUMBER: _ClassVar[int]
    seed: int
    class_index: int
    truncation: Truncation
    def __init__(self, seed: _Optional[int] = ..., class_index: _Optional[int] = ..., truncation: _Optional[_Union[Truncation, _Mapping]] = ...) -> None: ...

class LayerStyle(_message.Message):
    __slots__ = ("layers", "start", "stop", "source")
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    layers: _containers.RepeatedScalarFieldContainer[int]
    start: int
    stop: int
    source: StyleSource
    def __init__(self, layers: _Optional[_Iterable[int]] = ..., start: _Optional[int] = ..., stop: _Optional[int] = ..., source: _Optional[_Union[StyleSource, _Mapping]] = ...) -> None: ...

class NoiseControl(_message.Message):
    __slots__ = ("mode", "noise_seed", "strength")
    MODE_FIELD_NUMBER: _ClassVar[int]
    NOISE_SEED_FIELD_NUMBER: _ClassVar[int]
    STRENGTH_FIELD_NUMBER: _ClassVar[int]
    mode: str
    noise_seed: int
    strength: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, mode: _Optional[str] = ..., noise_seed: _Optional[int] = ..., strength: _Optional[_Iterable[float]] = ...) -> None: ...

class OutputOptions(_message.Message):
    __slots__ = ("format", "jpeg_quality", "return_ws")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    JPEG_QUALITY_FIELD_NUMBER: _ClassVar[int]
    RETURN_WS_FIELD_NUMBER: _ClassVar[int]
    format: ImageFormat
    jpeg_quality: int
    return_ws: bool
    def __init__(self, format: _Optional[_Union[ImageFormat, str]] = ..., jpeg_quality: _Optional[int] = ..., return_ws: _Optional[bool] = ...) -> None: ...

class StylePlan(_message.Message):
    __slots__ = ("styles", "noise", "transform")
    STYLES_FIELD_NUMBER: _ClassVar[int]
    NOISE_FIELD_NUMBER: _ClassVar[int]
    TRANSFORM_FIELD_NUMBER: _ClassVar[int]
    styles: _containers.RepeatedCompositeFieldContainer[LayerStyle]
    noise: NoiseControl
    transform: InputTransform
    def __init__(self, styles: _Optional[_Iterable[_Union[LayerStyle, _Mapping]]] = ..., noise: _Optional[_Union[NoiseControl, _Mapping]] = ..., transform: _Optional[_Union[InputTransform, _Mapping]] = ...) -> None: ...

class InputTransform(_message.Message):
    __slots__ = ("translate_x", "translate_y", "rotate_deg")
    TRANSLATE_X_FIELD_NUMBER: _ClassVar[int]
    TRANSLATE_Y_FIELD_NUMBER: _ClassVar[int]
    ROTATE_DEG_FIELD_NUMBER: _ClassVar[int]
    translate_x: float
    translate_y: float
    rotate_deg: float
    def __init__(self, translate_x: _Optional[float] = ..., translate_y: _Optional[float] = ..., rotate_deg: _Optional[float] = ...) -> None: ...

class SynthesizeRequest(_message.Message):
    __slots__ = ("model", "plans", "output")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PLANS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    model: str
    plans: _containers.RepeatedCompositeFieldContainer[StylePlan]
    output: OutputOptions
    def __init__(self, model: _Optional[str] = ..., plans: _Optional[_Iterable[_Union[StylePlan, _Mapping]]] = ..., output: _Optional[_Union[OutputOptions, _Mapping]] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("data", "format", "width", "height", "channels", "ws")
    DATA_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    WS_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    format: ImageFormat
    width: int
    height: int
    channels: int
    ws: Tensor
    def __init__(self, data: _Optional[bytes] = ..., format: _Optional[_Union[ImageFormat, str]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., channels: _Optional[int] = ..., ws: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class SynthesizeResponse(_message.Message):
    __slots__ = ("images",)
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[Image]
    def __init__(self, images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("model", "seeds", "class_index", "truncation", "noise", "output", "transforms")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SEEDS_FIELD_NUMBER: _ClassVar[int]
    CLASS_INDEX_FIELD_NUMBER: _ClassVar[int]
    TRUNCATION_FIELD_NUMBER: _ClassVar[int]
    NOISE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    TRANSFORMS_FIELD_NUMBER: _ClassVar[int]
    model: str
    seeds: _containers.RepeatedScalarFieldContainer[int]
    class_index: int
    truncation: Truncation
    noise: NoiseControl
    output: OutputOptions
    transforms: _containers.RepeatedCompositeFieldContainer[InputTransform]
    def __init__(self, model: _Optional[str] = ..., seeds: _Optional[_Iterable[int]] = ..., class_index: _Optional[int] = ..., truncation: _Optional[_Union[Truncation, _Mapping]] = ..., noise: _Optional[_Union[NoiseControl, _Mapping]] = ..., output: _Optional[_Union[OutputOptions, _Mapping]] = ..., transforms: _Optional[_Iterable[_Union[InputTransform, _Mapping]]] = ...) -> None: ...

class StyleMixGridRequest(_message.Message):
    __slots__ = ("model", "rows", "cols", "col_styles", "noise", "output", "compose", "transform")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    COL_STYLES_FIELD_NUMBER: _ClassVar[int]
    NOISE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    COMPOSE_FIELD_NUMBER: _ClassVar[int]
    TRANSFORM_FIELD_NUMBER: _ClassVar[int]
    model: str
    rows: _containers.RepeatedCompositeFieldContainer[StyleSource]
    cols: _containers.RepeatedCompositeFieldContainer[StyleSource]
    col_styles: _containers.RepeatedScalarFieldContainer[int]
    noise: NoiseControl
    output: OutputOptions
    compose: bool
    transform: InputTransform
    def __init__(self, model: _Optional[str] = ..., rows: _Optional[_Iterable[_Union[StyleSource, _Mapping]]] = ..., cols: _Optional[_Iterable[_Union[StyleSource, _Mapping]]] = ..., col_styles: _Optional[_Iterable[int]] = ..., noise: _Optional[_Union[NoiseControl, _Mapping]] = ..., output: _Optional[_Union[OutputOptions, _Mapping]] = ..., compose: _Optional[bool] = ..., transform: _Optional[_Union[InputTransform, _Mapping]] = ...) -> None: ...

class StyleMixGridResponse(_message.Message):
    __slots__ = ("cells", "grid")
    CELLS_FIELD_NUMBER: _ClassVar[int]
    GRID_FIELD_NUMBER: _ClassVar[int]
    cells: _containers.RepeatedCompositeFieldContainer[Image]
    grid: Image
    def __init__(self, cells: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., grid: _Optional[_Union[Image, _Mapping]] = ...) -> None: ...

class PutWRequest(_message.Message):
    __slots__ = ("model", "w")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    W_FIELD_NUMBER: _ClassVar[int]
    model: str
    w: Tensor
    def __init__(self, model: _Optional[str] = ..., w: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class PutWResponse(_message.Message):
    __slots__ = ("w_id",)
    W_ID_FIELD_NUMBER: _ClassVar[int]
    w_id: str
    def __init__(self, w_id: _Optional[str] = ...) -> None: ...

class GetWRequest(_message.Message):
    __slots__ = ("model", "w_id")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    W_ID_FIELD_NUMBER: _ClassVar[int]
    model: str
    w_id: str
    def __init__(self, model: _Optional[str] = ..., w_id: _Optional[str] = ...) -> None: ...

class GetWResponse(_message.Message):
    __slots__ = ("w",)
    W_FIELD_NUMBER: _ClassVar[int]
    w: Tensor
    def __init__(self, w: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class DeleteWRequest(_message.Message):
    __slots__ = ("model", "w_id")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    W_ID_FIELD_NUMBER: _ClassVar[int]
    model: str
    w_id: str
    def __init__(self, model: _Optional[str] = ..., w_id: _Optional[str] = ...) -> None: ...

class DeleteWResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class SeedRange(_message.Message):
    __slots__ = ("start", "stop")
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    start: int
    stop: int
    def __init__(self, start: _Optional[int] = ..., stop: _Optional[int] = ...) -> None: ...

class StreamGenerateRequest(_message.Message):
    __slots__ = ("model", "seeds", "plans", "class_index", "truncation", "noise", "output", "transform")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SEEDS_FIELD_NUMBER: _ClassVar[int]
    PLANS_FIELD_NUMBER: _ClassVar[int]
    CLASS_INDEX_FIELD_NUMBER: _ClassVar[int]
    TRUNCATION_FIELD_NUMBER: _ClassVar[int]
    NOISE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    TRANSFORM_FIELD_NUMBER: _ClassVar[int]
    model: str
    seeds: SeedRange
    plans: PlanList
    class_index: int
    truncation: Truncation
    noise: NoiseControl
    output: OutputOptions
    transform: InputTransform
    def __init__(self, model: _Optional[str] = ..., seeds: _Optional[_Union[SeedRange, _Mapping]] = ..., plans: _Optional[_Union[PlanList, _Mapping]] = ..., class_index: _Optional[int] = ..., truncation: _Optional[_Union[Truncation, _Mapping]] = ..., noise: _Optional[_Union[NoiseControl, _Mapping]] = ..., output: _Optional[_Union[OutputOptions, _Mapping]] = ..., transform: _Optional[_Union[InputTransform, _Mapping]] = ...) -> None: ...

class PlanList(_message.Message):
    __slots__ = ("plans",)
    PLANS_FIELD_NUMBER: _ClassVar[int]
    plans: _containers.RepeatedCompositeFieldContainer[StylePlan]
    def __init__(self, plans: _Optional[_Iterable[_Union[StylePlan, _Mapping]]] = ...) -> None: ...

class StreamItem(_message.Message):
    __slots__ = ("index", "seed", "image")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    index: int
    seed: int
    image: Image
    def __init__(self, index: _Optional[int] = ..., seed: _Optional[int] = ..., image: _Optional[_Union[Image, _Mapping]] = ...) -> None: ...
