import hashlib

import onnx
import pytest

from support.paths import MODEL_DIR, ZOO_MODELS
from spotdet.errors import ModelNotFoundError
from spotdet.models.card import TIERS, get_card, zoo
from spotdet.postprocess.decoders import DECODERS


def test_zoo_holds_the_six_shared_models():
    assert list(zoo()) == ZOO_MODELS


@pytest.mark.parametrize("name", ZOO_MODELS)
def test_card_matches_its_file(name):
    card = get_card(name)
    path = MODEL_DIR / card.file
    assert card.tier in TIERS and card.family in DECODERS
    assert len(card.names) == 80 and card.names[0] == "person" and card.names[79] == "toothbrush"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == card.sha256
    model = onnx.load(str(path))
    inits = {i.name for i in model.graph.initializer}
    image_input = [i for i in model.graph.input if i.name not in inits][0]
    dims = [d.dim_value for d in image_input.type.tensor_type.shape.dim]
    assert dims == [1, 3, *card.input_size]
    # Published parameter counts agree with the weights in the file (within 15%).
    n_params = sum(int(__import__("numpy").prod(i.dims)) for i in model.graph.initializer if len(i.dims) > 1)
    assert abs(n_params / 1e6 - card.params_m) / card.params_m < 0.15, n_params


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ModelNotFoundError) as info:
        get_card("yolox-nan")
    assert "yolox-nano" in str(info.value)
