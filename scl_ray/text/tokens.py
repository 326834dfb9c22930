"""HumanML3D `word/POS` tokens of a caption: `tokenize("a man kicks")` -> ("a/DET", "man/NOUN", "kick/VERB").

HumanML3D's texts/<id>.txt lines carry these tokens (`caption#word/POS word/POS ...#start#end`, see
motion/humanml3d.py), and the original T2M evaluator reads them (evaluation/t2m.py). Pure Python:
no numpy, no torch.
"""

from __future__ import annotations

import re

__all__ = ["tokenize"]

# A small rule and lexicon part-of-speech tagger standing in for spaCy's en_core_web_sm, which
# HumanML3D's text_process.py used (not installed here). Like upstream: hyphens are removed, only
# alphabetic words are kept, NOUN and VERB become their lemma except "left", and tags are universal
# POS. It knows the closed word classes of English and the vocabulary of motion captions; unknown
# words are tagged by suffix, and words that are both noun and verb ("a jump", "he jumps") by context.
_CLOSED_CLASSES = {
    "DET": "a an the this that these those his her their its my your our each every some any no "
           "another both all either neither",
    "PRON": "he she it they him them someone something somebody anyone anything everyone everything "
            "nothing himself herself itself themselves i me you we us who what which whom whose",
    "ADP": "with in on at from into onto for of by toward towards near upon against like during "
           "without beside besides within via throughout underneath beneath between among above "
           "below under after before",
    "CCONJ": "and or but nor yet",
    "SCONJ": "while as if because than though although whilst whereas until unless when where",
    "AUX": "is are was were be been being am has have had does do did can could will would should "
           "may might must shall ca wo",
    "PART": "not",
    "NUM": "one two three four five six seven eight nine ten eleven twelve twenty thirty hundred",
    "ADV": "then again very also away together still twice once here there just too almost really so "
           "sideways upward upwards downward downwards forth now first finally afterwards aside "
           "repeatedly clockwise counterclockwise anticlockwise forward forwards backward backwards "
           "fast hard much more most less quite rather even only always never ahead apart overhead",
    "ADJ": "left right slow quick big small large little long short high low wide narrow other same "
           "full heavy light several few many straight steady normal regular tiny huge giant "
           "imaginary invisible ready entire whole upper lower",
}
# Up, down, back, … are prepositions before a noun phrase ("up the stairs"), adverbs otherwise.
_PARTICLES = set("up down out off around over along behind across about past through back".split())
# Words that are both a noun and a verb ("a jump", "he jumps"); context picks the tag.
_DUAL = set(
    "walk run jump squat turn wave kick step spin hop dance jog stretch swing punch lean leap fall "
    "slide circle cross point stop start look bow nod roll flip lunge march stomp sway twist tilt skip "
    "drop push pull shake clap rock bounce crawl climb sprint dodge duck grab face box place pace".split())
_NOUNS = _DUAL | set(
    "man woman person figure human guy boy girl child body arm hand leg foot knee head shoulder hip "
    "waist torso chest elbow wrist ankle toe finger thigh neck side ground floor air direction "
    "time way motion movement stance position pose chair stair ball object wall table door room "
    "line path area front rest partner bar rope pole weight dumbbell instrument guitar violin exercise "
    "routine speed distance angle palm fist heel eye mouth chin thing ceiling jack".split())
_VERBS = _DUAL | set(
    "sit stand lift raise lower bend rotate throw catch pick put crouch kneel lie rise "
    "get go come take hold reach begin perform make use carry stumble balance stamp limp tiptoe open "
    "close wipe wash brush drink eat play extend fold flap flail swim fly drive ride return "
    "continue keep try appear seem bring sneak salute stagger strut stroll wobble sidestep cheer "
    "celebrate do have be wiggle hit move touch".split())
_IRREGULAR = {
    "feet": "foot", "people": "person", "men": "man", "women": "woman", "children": "child",
    "ran": "run", "sat": "sit", "stood": "stand", "went": "go", "gone": "go", "took": "take",
    "taken": "take", "held": "hold", "threw": "throw", "thrown": "throw", "caught": "catch",
    "got": "get", "rose": "rise", "risen": "rise", "lay": "lie", "lying": "lie", "began": "begin",
    "came": "come", "made": "make", "bent": "bend", "knelt": "kneel", "swung": "swing", "spun": "spin",
    "leapt": "leap", "fell": "fall", "fallen": "fall", "brought": "bring", "does": "do", "did": "do",
    "has": "have", "had": "have", "flew": "fly", "swam": "swim", "kept": "keep", "slid": "slide",
}
_LEXICON = {word: tag for tag, words in _CLOSED_CLASSES.items() for word in words.split()}
_ADJ_SUFFIXES = ("ful", "ous", "ive", "able", "ible", "al", "ic", "less", "ish")


def _lemma(word: str, lexicon: set[str]) -> str:
    """Base form of a noun or verb: irregular table, then the lexicon, then suffix stripping."""
    if word in _IRREGULAR or word in lexicon:
        return _IRREGULAR.get(word, word)
    for suffix in ("ing", "ed", "ies", "es", "s") if lexicon is _VERBS else ("ies", "es", "s"):
        if word.endswith(suffix) and len(word) > len(suffix) + 1:
            stem = word[: -len(suffix)]
            double = stem[:-1] if len(stem) > 2 and stem[-1] == stem[-2] and stem[-1] not in "lsz" else stem
            candidates = [stem + "y"] if suffix == "ies" else [stem, stem + "e", double]
            if suffix == "ed" and stem.endswith("i"):
                candidates.insert(0, stem[:-1] + "y")
            for candidate in candidates:
                if candidate in lexicon:
                    return candidate
            if suffix in ("s", "es") and word.endswith("ss"):
                return word
            return candidates[-1] if suffix in ("ing", "ed") else candidates[0]
    return word


def _base_tag(word: str) -> str:
    """Context-free tag: from the lexicons (DUAL: noun and verb), else by suffix, else UNKNOWN."""
    if word in _LEXICON:
        return _LEXICON[word]
    if word in _PARTICLES:
        return "PARTICLE"
    if word in _NOUNS and word not in _DUAL:
        return "NOUN"
    verb, noun = _lemma(word, _VERBS) in _VERBS, _lemma(word, _NOUNS) in _NOUNS
    if len(word) > 4 and word.endswith(("ing", "ed")) or word in _IRREGULAR and not noun:
        return "VERB"
    if verb and noun:
        return "DUAL"
    if verb or noun:
        return "VERB" if verb else "NOUN"
    if word.endswith("ly"):
        return "ADV"
    return "ADJ" if word.endswith(_ADJ_SUFFIXES) else "UNKNOWN"


def tokenize(text: str) -> tuple[str, ...]:
    """HumanML3D `word/POS` tokens of a caption, e.g. "a man kicks" -> ("a/DET", "man/NOUN", "kick/VERB")."""
    words = [w.split("'")[0] for w in re.findall(r"[A-Za-z]+(?:'[A-Za-z]+)?", text.replace("-", ""))]
    words = [w[:-1] if w.endswith("n") and f"{w}'t" in text else w for w in words]
    base = [_base_tag(word.lower()) for word in words]
    tokens, previous = [], "START"
    for index, (word, tag) in enumerate(zip(words, base)):
        lower = word.lower()
        following = base[index + 1] if index + 1 < len(base) else "END"
        if lower == "to":
            tag = "PART" if following in ("VERB", "DUAL") else "ADP"
        elif tag == "DUAL":
            tag = "NOUN" if previous in ("DET", "ADJ", "NUM", "ADP") else "VERB"
        elif tag == "UNKNOWN":
            tag = "VERB" if lower.endswith("s") and previous in ("NOUN", "PRON") else "NOUN"
        elif tag == "PARTICLE":
            tag = "NOUN" if previous == "DET" else "ADP" if following in ("DET", "PRON", "NUM") else "ADV"
        elif tag == "AUX" and lower in ("has", "have", "had", "do", "does", "did") and following in (
                "DET", "PRON", "NUM", "NOUN", "ADJ", "END"):
            tag = "VERB"
        elif tag == "ADJ" and previous == "DET" and following not in ("NOUN", "DUAL", "ADJ"):
            tag = "NOUN"
        if tag in ("NOUN", "VERB") and lower != "left":
            word = _lemma(lower, _VERBS if tag == "VERB" else _NOUNS)
        tokens.append(f"{word}/{tag}")
        previous = tag
    return tuple(tokens)
