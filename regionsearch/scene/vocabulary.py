"""Label vocabularies for zero-shot scene labels: the built-in list of common object names
(COCO's 80 categories plus frequent LVIS-style ones), prompt templates, and parsing of a
user's vocabulary (a comma-separated string or a file with one name per line)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..errors import InvalidRequestError
from ..types import JSON_SCHEMA_SPACE

#: COCO's 80 categories, then common LVIS-style object names (deduplicated, lower case)
BUILTIN_NAMES: tuple[str, ...] = tuple(dict.fromkeys("""
person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant stop_sign
parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella
handbag tie suitcase frisbee skis snowboard sports_ball kite baseball_bat baseball_glove
skateboard surfboard tennis_racket bottle wine_glass cup fork knife spoon bowl banana apple
sandwich orange broccoli carrot hot_dog pizza donut cake chair couch potted_plant bed
dining_table toilet tv laptop mouse remote keyboard cell_phone microwave oven toaster sink
refrigerator book clock vase scissors teddy_bear hair_drier toothbrush
man woman child baby boy girl face hand arm leg foot head hair eye ear nose mouth beard
shirt t-shirt jacket coat dress skirt pants jeans shorts sweater hoodie hat cap helmet glasses
sunglasses scarf glove shoe boot sneaker sandal sock belt watch bracelet necklace ring earring
bag purse wallet tree bush grass flower leaf plant palm_tree cactus rock stone mountain hill
sky cloud sun moon sea ocean wave beach sand river lake water snow ice road street sidewalk
path bridge building house skyscraper tower church castle wall fence gate door window roof
chimney stairs staircase balcony column pole street_light lamp lamppost sign billboard flag
banner tent bicycle_wheel wheel tire license_plate headlight mirror steering_wheel seat
van taxi ambulance fire_truck tractor scooter cart wagon trailer helicopter ship sailboat canoe
kayak yacht airplane_wing rocket satellite astronaut robot statue sculpture fountain bench_seat
table desk shelf bookshelf cabinet drawer cupboard wardrobe sofa armchair stool pillow cushion
blanket bedsheet curtain rug carpet towel mat box crate basket bucket barrel jar can tin
plate dish tray pan pot kettle teapot mug glass straw napkin bread cheese egg meat sausage
steak chicken fish shrimp rice noodles soup salad tomato potato onion pepper cucumber lettuce
mushroom corn lemon lime strawberry grape cherry peach pear pineapple watermelon melon coconut
cookie muffin cupcake pie ice_cream chocolate candy coffee tea juice milk beer wine
monitor computer screen television phone tablet camera headphones speaker microphone
cable charger battery light_bulb candle fan heater air_conditioner washing_machine dishwasher
stove blender faucet bathtub shower mirror_frame picture painting poster photo frame
whiteboard blackboard paper newspaper magazine notebook pen pencil marker eraser ruler
calculator envelope stamp card map globe calendar key lock tool hammer screwdriver wrench
saw drill ladder shovel rake hose broom mop vacuum_cleaner trash_can recycling_bin
ball football basketball soccer_ball tennis_ball golf_ball baseball bat racket net goal
skate ski surf_board bicycle_helmet toy doll puppet balloon kite_string drum guitar piano
violin trumpet flute saxophone accordion bell
horse_cart deer fox wolf lion tiger leopard cheetah monkey gorilla panda koala kangaroo
rabbit squirrel rat hamster pig goat donkey camel llama duck goose swan chicken_bird
owl eagle parrot penguin pigeon seagull flamingo butterfly bee spider ant snail frog turtle
snake lizard crocodile dolphin whale shark octopus crab jellyfish starfish
""".replace("_", " ").split()))

#: prompt templates averaged in embedding space for each name (CLIP-paper style)
BUILTIN_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.", "a photo of the {}.", "a close-up photo of a {}.", "a photo of a small {}.",
    "a photo of a large {}.", "a cropped photo of a {}.", "a good photo of a {}.", "a {} in a scene.",
)

MAX_NAMES = 5000


def parse_labels(spec: str | None) -> tuple[str, ...] | None:
    """A user's vocabulary: ``None`` -> ``None`` (use the config's); a path to an existing file
    -> one name per line (blank lines and ``#`` comments skipped); else a comma-separated list.
    Names are stripped and deduplicated in order."""
    if spec is None:
        return None
    p = Path(spec)
    if "," not in spec and p.is_file():
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidRequestError(f"cannot read the labels file {spec}: {exc}") from exc
        names = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    else:
        names = [s.strip() for s in spec.split(",") if s.strip()]
    return check_names(names)


def check_names(names: Sequence[str]) -> tuple[str, ...]:
    """Validated, deduplicated label names (1..``MAX_NAMES``, each 1..200 characters), stripped of
    the white space JSON Schema's ``\\s`` means (so the API's documented pattern and this agree)."""
    out = tuple(dict.fromkeys(str(n).strip(JSON_SCHEMA_SPACE) for n in names if str(n).strip(JSON_SCHEMA_SPACE)))
    if not out:
        raise InvalidRequestError("the label vocabulary is empty: give names like \"cat,dog,car\" or a file "
                                  "with one name per line")
    if len(out) > MAX_NAMES:
        raise InvalidRequestError(f"the label vocabulary has {len(out)} names; at most {MAX_NAMES}")
    long = [n for n in out if len(n) > 200]
    if long:
        raise InvalidRequestError(f"label names must be at most 200 characters: {long[0][:40]!r}...")
    return out
