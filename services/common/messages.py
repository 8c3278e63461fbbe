"""User-facing texts, in Russian (the default) and English.

Players and operators read Russian, so a client that sends no
``Accept-Language`` gets Russian; ``Accept-Language: en`` (or any header
whose first language is English) gets English. Keys are error codes of
:mod:`services.common.errors` and field message keys such as
``login.length``. A text may hold ``{name}`` placeholders filled from the
error's ``params``.
"""

DEFAULT_LANGUAGE = "ru"
LANGUAGES = ("ru", "en")

MESSAGES = {
    # Error codes.
    "internal_error": {
        "ru": "Внутренняя ошибка сервера. Попробуйте позже.",
        "en": "Internal server error. Try again later.",
    },
    "validation_error": {
        "ru": "Данные не прошли проверку.",
        "en": "The request data is invalid.",
    },
    "bad_request": {
        "ru": "Неверный запрос: {reason}",
        "en": "Bad request: {reason}",
    },
    # Reasons that fill bad_request's {reason}, in the message's language.
    "reason.content_type": {
        "ru": "тело должно быть в формате JSON (Content-Type: application/json)",
        "en": "Content-Type must be application/json",
    },
    "reason.json_invalid": {
        "ru": "тело не является правильным JSON",
        "en": "the body is not valid JSON",
    },
    "reason.json_object": {
        "ru": "тело должно быть объектом JSON",
        "en": "the body must be a JSON object",
    },
    "reason.json_depth": {
        "ru": "вложенность JSON глубже {depth} уровней",
        "en": "the JSON nests deeper than {depth} levels",
    },
    "invalid_api_key": {
        "ru": "Ключ API не указан или неверен.",
        "en": "The API key is missing or invalid.",
    },
    "forbidden": {
        "ru": "Доступ запрещён.",
        "en": "Access denied.",
    },
    "not_found": {
        "ru": "Не найдено.",
        "en": "Not found.",
    },
    "battle_not_found": {
        "ru": "Бой не найден.",
        "en": "No such battle.",
    },
    "player_not_found": {
        "ru": "Игрок не найден ни в одном загруженном бою.",
        "en": "The player is not in any loaded battle.",
    },
    "clan_not_found": {
        "ru": "Клан не найден ни в одном загруженном бою.",
        "en": "The clan is not in any loaded battle.",
    },
    "log_not_stored": {
        "ru": "Файл лога этого боя не сохранён.",
        "en": "The log file of this battle is not stored.",
    },
    "method_not_allowed": {
        "ru": "Метод не поддерживается для этого адреса.",
        "en": "The method is not allowed for this URL.",
    },
    "payload_too_large": {
        "ru": "Тело запроса больше {limit} байт.",
        "en": "The request body exceeds {limit} bytes.",
    },
    "rate_limited": {
        "ru": "Слишком много запросов. Повторите через {retry_after} с.",
        "en": "Too many requests. Retry in {retry_after} s.",
    },
    "telegram_auth_failed": {
        "ru": "Данные входа через Telegram не прошли проверку.",
        "en": "The Telegram login data failed verification.",
    },
    "not_in_telegram_group": {
        "ru": "Сначала вступите в группу проекта в Telegram.",
        "en": "Join the project's Telegram group first.",
    },
    "limit_exceeded": {
        "ru": "На этот аккаунт Telegram уже зарегистрировано {limit} персонажей.",
        "en": "This Telegram account already has {limit} characters.",
    },
    "login_taken": {
        "ru": "Этот логин уже занят.",
        "en": "This login is already taken.",
    },
    "request_id_reused": {
        "ru": "Этот идентификатор запроса уже использован для других данных.",
        "en": "This request id was already used with different data.",
    },
    "request_in_progress": {
        "ru": "Запрос с этим идентификатором ещё выполняется. Повторите позже.",
        "en": "A request with this id is still in progress. Retry later.",
    },
    "no_accounts": {
        "ru": "К этому аккаунту Telegram не привязан ни один персонаж.",
        "en": "No characters are linked to this Telegram account.",
    },
    "game_server_error": {
        "ru": "Игровой сервер отклонил запрос.",
        "en": "The game server rejected the request.",
    },
    "game_server_no_reply": {
        "ru": "Игровой сервер не ответил на регистрацию, и аккаунт не создан. "
              "Отправьте регистрацию заново с новым идентификатором запроса.",
        "en": "The game server never answered this registration, and no account was created. "
              "Send the registration again with a new request id.",
    },
    "game_server_internal_error": {
        "ru": "На игровом сервере произошла внутренняя ошибка, запрос не выполнен. Попробуйте позже; "
              "если ошибка повторяется, сообщите администрации сервера.",
        "en": "The game server had an internal error and did not carry out the request. Try again later, "
              "and tell the server's administrators if it keeps failing.",
    },
    "game_account_not_found": {
        "ru": "На игровом сервере нет персонажа {logins}, хотя он привязан к этому аккаунту Telegram. "
              "Сообщите администрации сервера.",
        "en": "The game server has no character {logins}, although it is linked to this Telegram account. "
              "Tell the server's administrators.",
    },
    "game_server_timeout": {
        "ru": "Игровой сервер не ответил вовремя, поэтому пароль мог не измениться. Повторите запрос позже.",
        "en": "The game server did not answer in time, so the password may not have changed. "
              "Repeat the request later.",
    },
    "password_partly_changed": {
        "ru": "Пароль изменён не для всех персонажей: изменён для {changed}, не изменён для {failed}. "
              "Повторите запрос позже, чтобы изменить остальные.",
        "en": "The password was not changed for every character: changed for {changed}, not for {failed}. "
              "Repeat the request later to change the rest.",
    },
    "game_server_unavailable": {
        "ru": "Игровой сервер недоступен. Попробуйте позже.",
        "en": "The game server is unavailable. Try again later.",
    },
    "telegram_unavailable": {
        "ru": "Не удалось проверить участие в группе Telegram. Попробуйте позже.",
        "en": "Telegram group membership could not be checked. Try again later.",
    },
    "service_unavailable": {
        "ru": "Сервис временно недоступен. Попробуйте позже.",
        "en": "The service is temporarily unavailable. Try again later.",
    },
    "invalid_admin_token": {
        "ru": "Токен администратора не указан или неверен.",
        "en": "The admin token is missing or invalid.",
    },
    "collect_job_not_found": {
        "ru": "Задание сбора логов № {job_id} не найдено.",
        "en": "Collection job {job_id} was not found.",
    },
    "collect_job_running": {
        "ru": "Задание сбора логов в направлении {direction} уже выполняется (№ {job_id}).",
        "en": "A {direction} collection job is already running (job {job_id}).",
    },
    "collection_disabled": {
        "ru": "Сбор логов боёв не настроен: не заданы аккаунты ботов.",
        "en": "Battle-log collection is not configured: no bot accounts are set.",
    },
    "shop_not_found": {
        "ru": "Магазин «{shop}» не настроен.",
        "en": "No shop {shop} is configured.",
    },
    "shop_item_not_found": {
        "ru": "Предмет № {item_id} не встречался ни в одном снимке магазина.",
        "en": "Item {item_id} is in no shop snapshot.",
    },
    "shop_snapshot_not_found": {
        "ru": "Снимок магазина № {snapshot_id} не найден.",
        "en": "Shop snapshot {snapshot_id} was not found.",
    },
    "shop_template_not_found": {
        "ru": "Шаблон предмета № {template_id} не найден.",
        "en": "Item template {template_id} was not found.",
    },
    "shop_disabled": {
        "ru": "Для магазина «{shop}» не задан аккаунт бота, снимки не делаются.",
        "en": "Shop {shop} has no bot account, so no snapshots are taken.",
    },
    # Success texts.
    "registered": {
        "ru": "Регистрация прошла успешно.",
        "en": "Registration succeeded.",
    },
    "password_changed": {
        "ru": "Пароль изменён.",
        "en": "The password was changed.",
    },
    # Field messages.
    "field.required": {
        "ru": "Обязательное поле.",
        "en": "This field is required.",
    },
    "field.unknown": {
        "ru": "Неизвестное поле.",
        "en": "Unknown field.",
    },
    "field.integer": {
        "ru": "Нужно целое число.",
        "en": "Must be an integer.",
    },
    "field.string": {
        "ru": "Нужна строка.",
        "en": "Must be a string.",
    },
    # Arguments of battle-log collection jobs.
    "collect.direction": {
        "ru": "Направление: forward, backward или range.",
        "en": "The direction must be forward, backward or range.",
    },
    "collect.battle_id": {
        "ru": "Нужен номер боя: целое число от {floor} до {max_id}.",
        "en": "Must be a battle id, an integer from {floor} to {max_id}.",
    },
    "collect.count": {
        "ru": "Количество: целое число больше нуля.",
        "en": "The count must be a positive integer.",
    },
    "collect.end_and_count": {
        "ru": "Укажите end или count, но не оба сразу.",
        "en": "Give end or count, not both.",
    },
    "collect.range_end": {
        "ru": "Для range укажите end или count.",
        "en": "A range needs end or count.",
    },
    "collect.end_before_start": {
        "ru": "Конец (end) не может быть меньше начала (start).",
        "en": "The end must not be less than the start.",
    },
    "collect.backward_end": {
        "ru": "Для backward end — нижняя граница, она не может быть больше начала (start).",
        "en": "For backward, end is the lowest id and must not exceed the start.",
    },
    "collect.no_start": {
        "ru": "Ещё ни один бой не собран и не загружен: укажите start.",
        "en": "No battle has been fetched or loaded yet: give start.",
    },
    "collect.history_done": {
        "ru": "Ниже самого раннего собранного боя нет номеров до нижней границы {floor}.",
        "en": "No ids are left between the lowest fetched battle and the floor {floor}.",
    },
    "collect.job_id": {
        "ru": "Номер задания: положительное целое число.",
        "en": "The job id must be a positive integer.",
    },
    "collect.limit": {
        "ru": "Нужно целое число от 1 до 100.",
        "en": "Must be an integer from 1 to 100.",
    },
    "collect.status": {
        "ru": "Состояние: running, finished, aborted или failed.",
        "en": "The status must be running, finished, aborted or failed.",
    },
    "shop.ambiguous": {
        "ru": "Предмет с этим номером есть в нескольких магазинах; укажите shop.",
        "en": "Items with this id are in several shops; give shop.",
    },
    "shop.snapshot_pair": {
        "ru": "Снимки from и to должны быть разными, законченными и из одного магазина, from раньше to.",
        "en": "Snapshots from and to must be different finished snapshots of one shop, from before to.",
    },
    "shop.price_order": {
        "ru": "max_price не может быть меньше min_price.",
        "en": "max_price must not be less than min_price.",
    },
    "shop.too_few_snapshots": {
        "ru": "У магазина меньше двух законченных снимков; сравнивать нечего.",
        "en": "The shop has fewer than two finished snapshots, so there is nothing to compare.",
    },
    "login.length": {
        "ru": "Логин: от 3 до 16 символов.",
        "en": "The login must be 3 to 16 characters long.",
    },
    "login.charset": {
        "ru": "Логин: только латиница или только кириллица, цифры, пробел, «_» и «-», и хотя бы одна буква.",
        "en": "The login takes Latin or Cyrillic letters (not both), digits, spaces, '_' and '-', "
              "with at least one letter.",
    },
    "login.spaces": {
        "ru": "Логин не может начинаться или заканчиваться пробелом, а пробелы в нём не могут идти подряд.",
        "en": "The login must not start or end with a space or have two spaces in a row.",
    },
    "password.length": {
        "ru": "Пароль: от 6 до 20 символов.",
        "en": "The password must be 6 to 20 characters long.",
    },
    "password.charset": {
        "ru": "Пароль: только печатные символы ASCII (латиница, цифры, знаки, пробел).",
        "en": "The password takes printable ASCII characters only.",
    },
    "gender.choice": {
        "ru": "Выберите пол персонажа: 0 — женский, 1 — мужской.",
        "en": "Choose the character's gender: 0 female, 1 male.",
    },
    "telegram_id.positive": {
        "ru": "Идентификатор Telegram должен быть положительным целым числом.",
        "en": "The Telegram id must be a positive integer.",
    },
    "telegram_auth.not_configured": {
        "ru": "Вход через Telegram на этом сервере не настроен: пришлите telegram_id.",
        "en": "Telegram login is not set up on this server: send telegram_id instead.",
    },
    "telegram_id.mismatch": {
        "ru": "Идентификатор Telegram не совпадает с данными входа.",
        "en": "The Telegram id does not match the login data.",
    },
    "username.length": {
        "ru": "Имя пользователя Telegram: не длиннее 64 символов.",
        "en": "The Telegram username must be at most 64 characters long.",
    },
    "request_id.format": {
        "ru": "Идентификатор запроса: от 8 до 64 символов из латиницы, цифр, «-» и «_».",
        "en": "The request id must be 8 to 64 letters, digits, '-' or '_'.",
    },
    "telegram_auth.invalid": {
        "ru": "Данные входа через Telegram неполны или устарели.",
        "en": "The Telegram login data is incomplete or too old.",
    },
    # Query parameters of the analytics API.
    "param.unknown": {
        "ru": "Неизвестный параметр.",
        "en": "Unknown parameter.",
    },
    "param.repeated": {
        "ru": "Параметр указан больше одного раза.",
        "en": "The parameter is given more than once.",
    },
    "param.mapping": {
        "ru": "Параметры нужно передать объектом.",
        "en": "Parameters must be an object.",
    },
    "param.integer": {
        "ru": "Нужно целое число.",
        "en": "Must be an integer.",
    },
    "param.number": {
        "ru": "Нужно число.",
        "en": "Must be a number.",
    },
    "param.range": {
        "ru": "Допустимы значения от {min} до {max}.",
        "en": "Must be from {min} to {max}.",
    },
    "param.text": {
        "ru": "Нужна непустая строка без управляющих символов, не длиннее {max} символов.",
        "en": "Must be non-empty text without control characters, at most {max} characters long.",
    },
    "param.datetime": {
        "ru": "Нужна дата или дата и время в формате ISO 8601, например 2025-10-01 или 2025-10-01T12:00:00Z.",
        "en": "Must be an ISO 8601 date or date-time, such as 2025-10-01 or 2025-10-01T12:00:00Z.",
    },
    "param.choice": {
        "ru": "Допустимые значения: {choices}.",
        "en": "Allowed values: {choices}.",
    },
    "param.boolean": {
        "ru": "Нужно true или false (или 1 и 0).",
        "en": "Must be true or false (or 1 and 0).",
    },
    "param.timezone": {
        "ru": "Неизвестный часовой пояс; укажите имя из базы IANA, например Europe/Moscow.",
        "en": "Unknown time zone; give an IANA name such as Europe/Moscow.",
    },
    "param.order": {
        "ru": "Конец периода (until) должен быть позже начала (since).",
        "en": "The end of the period (until) must be later than its start (since).",
    },
    "param.ambiguous": {
        "ru": "Бой с этим номером есть на нескольких серверах; укажите server.",
        "en": "Battles with this id exist on several servers; give server.",
    },
}


def pick_language(accept_language: str | None) -> str:
    """Return ``en`` when the header's first language is English, else ``ru``."""
    if not accept_language:
        return DEFAULT_LANGUAGE
    first = accept_language.split(",", 1)[0].split(";", 1)[0].strip().lower()
    return "en" if first == "en" or first.startswith("en-") else DEFAULT_LANGUAGE


def render(key: str, language: str = DEFAULT_LANGUAGE, params: dict | None = None) -> str:
    """Return the text for ``key`` in ``language``, with placeholders filled.

    An unknown key falls back to the internal error's text, and a missing
    placeholder stays as written, so a message never fails to render.
    """
    texts = MESSAGES.get(key) or MESSAGES["internal_error"]
    text = texts.get(language) or texts[DEFAULT_LANGUAGE]
    params = dict(params or {})
    # A parameter that names a "reason." message is rendered in the same
    # language, with the other parameters.
    reasons = {name: value for name, value in params.items()
               if isinstance(value, str) and value.startswith("reason.") and value in MESSAGES}
    plain = {name: value for name, value in params.items() if name not in reasons}
    for name, value in reasons.items():
        params[name] = render(value, language, plain)
    try:
        return text.format(**params)
    except (KeyError, IndexError, ValueError):
        return text
