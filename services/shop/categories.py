"""The shop categories that the tracker reads, in the order it reads them.

A category is the one-character code of the ``c`` attribute of a shop
request. The game also has category ``1``, the requesting bot's own
listings; it is private to the bot and never read.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    code: str
    name_ru: str
    name_en: str
    group: str  # weapons, clothing, other


CATEGORIES = (
    Category("k", "Холодное оружие", "Melee weapons", "weapons"),
    Category("p", "Пистолеты", "Pistols", "weapons"),
    Category("v", "Винтовки и автоматы", "Rifles and assault rifles", "weapons"),
    Category("w", "Тяжёлое оружие", "Heavy weapons", "weapons"),
    Category("e", "Энергетическое оружие", "Energy weapons", "weapons"),
    Category("x", "Биологическое оружие", "Biological weapons", "weapons"),
    Category("g", "Метательное оружие", "Throwing weapons", "weapons"),
    Category("m", "Боевые устройства", "Combat devices", "weapons"),
    Category("a", "Боеприпасы", "Ammunition", "weapons"),
    Category("i", "Энергомодули", "Energy modules", "weapons"),
    Category("h", "Шлемы и береты", "Helmets and berets", "clothing"),
    Category("c", "Куртки и бронежилеты", "Jackets and body armour", "clothing"),
    Category("l", "Наручи", "Arm guards", "clothing"),
    Category("t", "Брюки", "Trousers", "clothing"),
    Category("b", "Обувь", "Footwear", "clothing"),
    Category("f", "Гражданская одежда", "Civilian clothing", "clothing"),
    Category("q", "Комплекты брони", "Armour sets", "clothing"),
    Category("u", "Встроенные модули", "Built-in modules", "other"),
    Category("n", "Улучшения", "Upgrades", "other"),
    Category("j", "Снаряжение", "Equipment", "other"),
    Category("d", "Медицина", "Medicine", "other"),
    Category("s", "Ресурсы", "Resources", "other"),
    Category("y", "Реагенты", "Crafting reagents", "other"),
    Category("r", "Документы", "Documents", "other"),
    Category("z", "Разное", "Miscellaneous", "other"),
    Category("0", "Импланты", "Implants", "other"),
)

CATEGORY_CODES = tuple(category.code for category in CATEGORIES)
BY_CODE = {category.code: category for category in CATEGORIES}

GROUP_NAMES = {
    "weapons": ("Оружие", "Weapons"),
    "clothing": ("Одежда", "Clothing"),
    "other": ("Прочее", "Other"),
}


def describe() -> list[dict]:
    """Return every category as ``{code, name_ru, name_en, group, group_ru, group_en}``, in reading order."""
    return [
        {
            "code": category.code,
            "name_ru": category.name_ru,
            "name_en": category.name_en,
            "group": category.group,
            "group_ru": GROUP_NAMES[category.group][0],
            "group_en": GROUP_NAMES[category.group][1],
        }
        for category in CATEGORIES
    ]
