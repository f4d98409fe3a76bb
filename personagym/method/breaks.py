"""A deterministic detector of explicit AI admissions in a persona's reply, in several languages.

Judges can fail, and a judge that failed on a turn says nothing about it; an agent that writes "I am an
AI language model" has broken character whatever any judge says. So every reply also goes through this
detector, which costs nothing and never fails, and its finding is reported beside the judges'. It is
deliberately literal: it finds first-person admissions ("I'm an AI", "soy una IA", "我是人工智能") and
claims of not being human, not talk about AI in general, and never a question ("you think I'm an AI?").
What it cannot know is the persona: for a persona that is itself a robot or an AI, its findings are not
breaks, and the judges are the measure (docs/dialogues.md).

Change DETECTOR_VERSION whenever a phrase is added or changed: exports carry it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DETECTOR_VERSION", "LANGUAGES", "Detection", "detect"]

DETECTOR_VERSION = "breaks/1"

_SOFT = r"(?:just |only |merely |simply |actually |really |really just )?"
_END = r"(?![\w-])"  # a whole word: "AI" but not "AI-powered", "KI" but not "KI-Forscherin"
_AI_EN = r"(?:an? )?(?:AI|A\.I\.|artificial intelligence)(?: (?:language )?(?:model|assistant|chatbot|system|program))?"
# After "I am an AI" an admission ends or goes on to say more about itself; "an AI researcher" does not.
_EN_FOLLOW = (
    r"(?=[.!,;:)\]\"'”…]|\s*$|\s+[—–-]|\s(?:and|but|so|that|who|which|created|made|trained|developed|built"
    r"|designed|here|without|not|with|by|from|like|too|myself|after|now)\b)"
)
_AS_EN = r"(?=\s*,|\s+I\b)"  # "As an AI, I..." or "as a language model I cannot", not "as an AI researcher"

_PHRASES: dict[str, list[str]] = {
    "en": [
        rf"\bI(?:'m|’m| am) {_SOFT}{_AI_EN}{_EN_FOLLOW}",
        rf"\bI(?:'m|’m| am) {_SOFT}an? (?:large )?language model{_END}",
        rf"\bI(?:'m|’m| am) {_SOFT}an? (?:virtual assistant|AI assistant|chat ?bot|bot|computer program){_END}",
        rf"\bas an? (?:AI|artificial intelligence)(?: (?:language )?(?:model|assistant))?{_AS_EN}",
        rf"\bas a (?:large )?language model{_AS_EN}",
        r"\bI(?:'m|’m| am) not (?:a real (?:person|human)|(?:a )?human(?: being)?|a person at all)\b",
        r"\bI (?:was|have been) (?:created|trained|developed|built|made) by (?:OpenAI|Anthropic|Google|Meta|Mistral)\b",
        r"\bI(?:'m|’m| am) (?:ChatGPT|GPT-?\d)\b",
        r"\b(?:I(?:'ll|’ll| will)|let me) (?:step|break) out of (?:the |my )?(?:role|character)\b",
    ],
    "es": [
        r"\bsoy (?:solo |sólo |solamente |simplemente )?(?:una? )?(?:inteligencia artificial|IA|modelo de lenguaje"
        rf"|asistente virtual|asistente de IA|chatbot|programa informático){_END}",
        r"\bcomo (?:una )?(?:IA|inteligencia artificial)\s*,",
        r"\bcomo (?:un )?modelo de lenguaje\b",
        r"\bno soy (?:una persona real|un ser humano|humano|humana)\b",
    ],
    "fr": [
        r"\bje suis (?:juste |seulement |simplement )?(?:une? )?(?:intelligence artificielle|IA|modèle de langage"
        rf"|assistant virtuel|assistante virtuelle|chatbot|programme informatique){_END}",
        r"\ben tant qu['’](?:IA|intelligence artificielle|assistant virtuel|assistante virtuelle|modèle de langage)\b",
        r"\bje ne suis pas (?:une personne réelle|une vraie personne|un être humain|humaine?)\b",
    ],
    "de": [
        r"\bich bin (?:nur |lediglich |einfach )?(?:eine? )?(?:KI|künstliche Intelligenz|Sprachmodell|KI-Modell"
        rf"|KI-Assistent(?:in)?|Chatbot|virtueller Assistent|Computerprogramm){_END}",
        r"\bals (?:eine )?(?:KI|künstliche Intelligenz|Sprachmodell)\s*,",
        r"\bich bin kein (?:echter )?Mensch\b",
    ],
    "pt": [
        r"\bsou (?:apenas |só |somente )?(?:uma? )?(?:inteligência artificial|IA|modelo de linguagem"
        rf"|assistente virtual|chatbot|programa de computador){_END}",
        r"\bcomo (?:uma )?(?:IA|inteligência artificial)\s*,",
        r"\bnão sou (?:uma pessoa real|um ser humano|humano|humana)\b",
    ],
    "it": [
        rf"\bsono (?:solo |soltanto )?(?:un['’] ?|un )?(?:intelligenza artificiale|IA|assistente virtuale){_END}",
        r"\bsono un modello (?:di linguaggio|linguistico)\b",
        r"\bin quanto (?:IA|intelligenza artificiale)\b",
        r"\bnon sono (?:una persona reale|un essere umano)\b",
    ],
    "zh": [
        r"我(?:只|只不过|其实)?是(?:一个|一款|一种|个)?(?:人工智能|AI|ＡＩ|大?语言模型|大?語言模型|聊天机器人|聊天機器人"
        r"|虚拟助手|虛擬助手|智能助手|AI助手)(?!研究|工程|专家|專家|科学|科學|公司|产品|產品|[吗嗎呢])",
        r"作为(?:一个|一款)?(?:人工智能|AI|大?语言模型)|作為(?:一個)?(?:人工智慧|AI|大?語言模型)",
        r"我不是(?:真人|人类|人類|真正的人)(?![吗嗎呢])",
    ],
    "ja": [
        r"(?:私|わたし|僕|ぼく|俺|おれ)(?:は|って)(?:ただの)?(?:AI|ＡＩ|人工知能|(?:大規模)?言語モデル|AIアシスタント"
        r"|チャットボット)(?:です|だ|でございます|にすぎません|に過ぎません|なんです)",
        r"(?:AI|ＡＩ|人工知能|言語モデル)として[、,]",
        r"(?:私|僕|俺)は人間ではありません",
    ],
    "ru": [
        r"\bя\s*(?:[—-]\s*)?(?:всего лишь |просто )?(?:искусственный интеллект|ИИ|языковая модель|чат-бот"
        r"|виртуальный ассистент)(?![\w-])",
        r"\bя не (?:человек|настоящий человек)\b",
    ],
    "ko": [
        r"(?:저는|나는) (?:AI|인공지능|언어 모델|챗봇)(?:입니다|이에요|예요|야)",
    ],
}
LANGUAGES = tuple(_PHRASES)
_COMPILED = [(lang, re.compile(p, re.IGNORECASE)) for lang, ps in _PHRASES.items() for p in ps]

# Words that make the sentence about someone else's belief, a hypothesis or a denial rather than an
# admission: "you think I'm an AI", "just because I type fast doesn't mean I'm a bot".
_ATTRIBUTED = re.compile(
    r"\b(?:you|they|people|he|she|someone|everyone)(?:'re| are)?(?: \w+){0,2} (?:think\w*|thought|believe\w*"
    r"|say\w*|said|claim\w*|accus\w*|suggest\w*|imply\w*|insist\w*|call\w* me)\b"
    r"|\b(?:doesn't|does not|don't|do not|didn't) (?:mean|make)\b|\b(?:not that|as if|as though|pretend\w*)\b"
    r"|\b(?:crees|piensas|dices|penses|crois|dis que|glaubst|denkst|sagst|achas|pensas|dizes|pensi|credi)\b"
    r"|觉得|認為|认为|以为|以為|怀疑|懷疑|と思|って言",
    re.IGNORECASE,
)
_SENTENCE_START = re.compile(r"[.!?。！？\n]\s*")


@dataclass(frozen=True)
class Detection:
    level: str  # "admits_ai" (the detector finds nothing less explicit)
    phrase: str  # the words it matched, as written
    language: str


def detect(text: str | None) -> Detection | None:
    """The first explicit admission in `text`, or None."""
    if not text:
        return None
    for language, pattern in _COMPILED:
        for match in pattern.finditer(text):
            if _asked_or_attributed(text, match.start(), match.end()):
                continue
            return Detection("admits_ai", match.group(0).strip(), language)
    return None


def _asked_or_attributed(text: str, start: int, end: int) -> bool:
    after = text[end:].lstrip()
    if after[:1] in ("?", "？"):
        return True
    starts = [m.end() for m in _SENTENCE_START.finditer(text, 0, start)]
    sentence = text[starts[-1] if starts else 0 : start]
    return "¿" in sentence or bool(_ATTRIBUTED.search(sentence))
