"""Scenes: objects, zero-shot labels, spatial relations (pure, vectorised) and scene text;
relational queries ("X left of Y") over a corpus."""

from .query import RelationalQuery, parse_relational
from .relations import PREDICATES, Geometry, ObjectMask, Relation, measure, relation_matrices, relations
from .scene import Labeler, Scene, SceneObject, build_scene, scene_of_array, scene_of_indexed

__all__ = ["PREDICATES", "Geometry", "Labeler", "ObjectMask", "Relation", "RelationalQuery", "Scene", "SceneObject",
           "build_scene", "measure", "parse_relational", "relation_matrices", "relations", "scene_of_array",
           "scene_of_indexed"]
