"""Filler sentences: neutral prose that pads fact documents to a length in tokens.

Sentences are composed from three small grammars (places, weather, people) with an optional
closing phrase, about seventeen thousand distinct sentences, so long documents do not all read
alike. No filler word is a value the QA facts use (jobs, products, colors, months, numbers)
or names an attribute a question asks about, so a fact is stated only by its fact sentence.
"""

from __future__ import annotations

import random

PLACES = (
    "The old harbour", "The north road", "The village square", "The reading room", "The covered market",
    "The stone chapel", "The hill path", "The east gate", "The public garden", "The long pier",
    "The narrow lane", "The town hall", "The ferry landing", "The orchard behind the inn", "The upper meadow",
    "The railway cutting", "The small theatre", "The fish market", "The south quay", "The old mill",
    "The lighthouse", "The bus depot", "The lower terrace", "The corner cafe", "The sports ground",
    "The botanical garden", "The wooden bridge", "The parish hall", "The sea wall", "The main avenue",
)
PLACE_PREDICATES = (
    "is quiet for most of the afternoon", "draws a small crowd at the end of the week",
    "was repaired after a long and windy winter", "is lit by lanterns in the evening",
    "smells of salt and wet wood", "is crowded when the weather turns warm",
    "has a bench where people wait for the post", "stays open late during the holidays",
    "was once the busiest spot in the district", "is reached by a flight of worn steps",
    "looks different in the early light", "is swept clean every morning",
    "floods a little when the tide is high", "hosts a concert now and then",
    "is where visitors usually ask for directions", "has changed very little over the decades",
    "is sheltered from the wind by a row of trees", "echoes with footsteps on quiet nights",
    "fills with the sound of gulls", "is painted in pale and faded tones",
    "was closed for a while for repairs", "is popular with people walking their dogs",
    "sits at the end of a gravel track", "is busier than it looks from the road",
    "keeps a notice board full of small announcements", "is cool and shaded even at noon",
)
WEATHER_SUBJECTS = (
    "Fog", "A light wind", "Heavy snow", "A warm breeze", "Thin cloud", "A sudden shower",
    "Morning frost", "A low mist", "Strong gusts", "Soft drizzle", "Bright sunshine", "A heavy storm",
)
WEATHER_PREDICATES = (
    "settles over the valley", "moves slowly across the low fields", "covers the rooftops",
    "drifts in from the sea", "hangs over the marshes", "sweeps along the coast",
    "lingers in the narrow streets", "clears before midday", "rolls down from the hills",
    "leaves the lanes slippery", "keeps most people indoors", "softens the outline of the hills",
)
PEOPLE_SUBJECTS = (
    "Visitors", "Neighbours", "Students", "Walkers", "Cyclists", "Children", "Old friends",
    "Travellers", "Families", "Shopkeepers", "Volunteers", "Commuters",
)
PEOPLE_PREDICATES = (
    "often stop to talk about the long evenings", "like to sit by the water",
    "gather to watch the light fade", "rarely hurry along this stretch",
    "trade stories about the old days", "meet here before setting off",
    "leave flowers on the low wall", "share a flask of something hot",
    "argue cheerfully about the best route home", "come back year after year",
    "wave to each other across the street", "take the long way round on purpose",
)
CLOSINGS = (
    "", "", "", "", "", " after the storm", " in the cooler season", " on most weekends",
    " when the nights draw in", " at the start of the day", " as the light fails",
    " for reasons nobody remembers", " according to local custom", " in almost any weather",
    " without much fuss", " now and again", " late in the evening", " early in the morning",
    " more than it used to", " in the quieter weeks",
)
_GRAMMARS = ((PLACES, PLACE_PREDICATES), (WEATHER_SUBJECTS, WEATHER_PREDICATES),
             (PEOPLE_SUBJECTS, PEOPLE_PREDICATES))


def filler_sentence(rng: random.Random) -> str:
    """One neutral sentence drawn from ``rng`` (places are twice as likely as the others)."""
    subjects, predicates = _GRAMMARS[rng.choice((0, 0, 1, 2))]
    return f"{rng.choice(subjects)} {rng.choice(predicates)}{rng.choice(CLOSINGS)}."
