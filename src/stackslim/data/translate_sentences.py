"""Everyday sentences in German, French and Spanish with their English translations, for the
speech-translation set ``synth-translate`` (written for stackslim; no outside text).

The list is parallel: row i is one English sentence and its German, French and Spanish
versions, so the three languages are scored against the same references. None of the English
sentences is an evaluation or pool sentence of :mod:`~stackslim.data.sentences` (the
transcription set), so training on that pool never sees translation test text. Texts carry no
final punctuation (the synthesiser adds a full stop); references are scored by sacrebleu.

The split is by sentence: every 5th row (i % 5 == 4) is ``eval``, the rest ``train``, the same
for every language and voice, so no eval sentence is heard in training in any language.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from ..errors import DataError

LANGUAGES = ("de", "fr", "es")  # source languages (Whisper language codes)
EVAL_EVERY = 5  # every 5th sentence is in the eval split


class TranslationPair(NamedTuple):
    """One sentence: its index in the list, language, source text, English reference, split."""

    index: int
    language: str
    source_text: str
    reference_en: str
    split: str


# (English, German, French, Spanish)
_ROWS: tuple[tuple[str, str, str, str], ...] = (
    ('Where is the nearest bus stop', 'Wo ist die nächste Bushaltestelle', "Où est l'arrêt de bus le plus proche", 'Dónde está la parada de autobús más cercana'),
    ('I would like a glass of water', 'Ich hätte gern ein Glas Wasser', "Je voudrais un verre d'eau", 'Quisiera un vaso de agua'),
    ("The shop opens at nine o'clock", 'Der Laden öffnet um neun Uhr', 'Le magasin ouvre à neuf heures', 'La tienda abre a las nueve'),
    ('My brother lives in a small town', 'Mein Bruder wohnt in einer kleinen Stadt', 'Mon frère habite dans une petite ville', 'Mi hermano vive en un pueblo pequeño'),
    ('It is raining again today', 'Heute regnet es wieder', "Il pleut encore aujourd'hui", 'Hoy llueve otra vez'),
    ('We are going to the cinema tonight', 'Wir gehen heute Abend ins Kino', 'Nous allons au cinéma ce soir', 'Vamos al cine esta noche'),
    ('The soup is very good', 'Die Suppe ist sehr gut', 'La soupe est très bonne', 'La sopa está muy buena'),
    ('Can you help me please', 'Kannst du mir bitte helfen', "Peux-tu m'aider s'il te plaît", 'Puedes ayudarme por favor'),
    ('I do not understand the question', 'Ich verstehe die Frage nicht', 'Je ne comprends pas la question', 'No entiendo la pregunta'),
    ('The children are playing in the garden', 'Die Kinder spielen im Garten', 'Les enfants jouent dans le jardin', 'Los niños juegan en el jardín'),
    ('My phone is on the table', 'Mein Handy liegt auf dem Tisch', 'Mon téléphone est sur la table', 'Mi teléfono está en la mesa'),
    ('She works in a hospital', 'Sie arbeitet in einem Krankenhaus', 'Elle travaille dans un hôpital', 'Ella trabaja en un hospital'),
    ('The train is late this morning', 'Der Zug hat heute Morgen Verspätung', 'Le train est en retard ce matin', 'El tren llega tarde esta mañana'),
    ('I like to read in the evening', 'Ich lese gern am Abend', "J'aime lire le soir", 'Me gusta leer por la noche'),
    ('How much does this shirt cost', 'Wie viel kostet dieses Hemd', 'Combien coûte cette chemise', 'Cuánto cuesta esta camisa'),
    ('We have a big dog', 'Wir haben einen großen Hund', 'Nous avons un grand chien', 'Tenemos un perro grande'),
    ('The weather is nice today', 'Das Wetter ist heute schön', "Il fait beau aujourd'hui", 'Hoy hace buen tiempo'),
    ('Please close the window', 'Bitte mach das Fenster zu', "Ferme la fenêtre s'il te plaît", 'Cierra la ventana por favor'),
    ('I am very tired', 'Ich bin sehr müde', 'Je suis très fatigué', 'Estoy muy cansado'),
    ('My mother cooks every Sunday', 'Meine Mutter kocht jeden Sonntag', 'Ma mère cuisine tous les dimanches', 'Mi madre cocina todos los domingos'),
    ('The book is on the shelf', 'Das Buch steht im Regal', "Le livre est sur l'étagère", 'El libro está en la estantería'),
    ('Do you want a cup of coffee', 'Möchtest du eine Tasse Kaffee', 'Veux-tu une tasse de café', 'Quieres una taza de café'),
    ('The museum is closed on Monday', 'Das Museum ist am Montag geschlossen', 'Le musée est fermé le lundi', 'El museo está cerrado los lunes'),
    ('I need a new pair of shoes', 'Ich brauche ein neues Paar Schuhe', "J'ai besoin d'une nouvelle paire de chaussures", 'Necesito un par de zapatos nuevos'),
    ('Our house has a red door', 'Unser Haus hat eine rote Tür', 'Notre maison a une porte rouge', 'Nuestra casa tiene una puerta roja'),
    ('The water is too cold', 'Das Wasser ist zu kalt', "L'eau est trop froide", 'El agua está demasiado fría'),
    ('He drives to work every day', 'Er fährt jeden Tag zur Arbeit', 'Il va au travail en voiture tous les jours', 'Él va al trabajo en coche todos los días'),
    ('I forgot my keys at home', 'Ich habe meine Schlüssel zu Hause vergessen', "J'ai oublié mes clés à la maison", 'Olvidé mis llaves en casa'),
    ('The baby is sleeping now', 'Das Baby schläft jetzt', 'Le bébé dort maintenant', 'El bebé está durmiendo ahora'),
    ('We eat dinner at seven', 'Wir essen um sieben zu Abend', 'Nous dînons à sept heures', 'Cenamos a las siete'),
    ('The station is not far from here', 'Der Bahnhof ist nicht weit von hier', "La gare n'est pas loin d'ici", 'La estación no está lejos de aquí'),
    ('My sister plays the piano', 'Meine Schwester spielt Klavier', 'Ma sœur joue du piano', 'Mi hermana toca el piano'),
    ('I would like to pay by card', 'Ich möchte mit Karte bezahlen', 'Je voudrais payer par carte', 'Quisiera pagar con tarjeta'),
    ('The flowers in the park are beautiful', 'Die Blumen im Park sind schön', 'Les fleurs du parc sont belles', 'Las flores del parque son bonitas'),
    ('Where can I buy a ticket', 'Wo kann ich eine Fahrkarte kaufen', 'Où puis-je acheter un billet', 'Dónde puedo comprar un billete'),
    ('The teacher speaks very slowly', 'Der Lehrer spricht sehr langsam', 'Le professeur parle très lentement', 'El profesor habla muy despacio'),
    ('I have a headache', 'Ich habe Kopfschmerzen', "J'ai mal à la tête", 'Me duele la cabeza'),
    ('The car is in the garage', 'Das Auto ist in der Garage', 'La voiture est dans le garage', 'El coche está en el garaje'),
    ('We are going on holiday tomorrow', 'Wir fahren morgen in den Urlaub', 'Nous partons en vacances demain', 'Mañana nos vamos de vacaciones'),
    ('This bread is fresh', 'Dieses Brot ist frisch', 'Ce pain est frais', 'Este pan está fresco'),
    ('My friend is coming to visit', 'Mein Freund kommt zu Besuch', 'Mon ami vient me rendre visite', 'Mi amigo viene de visita'),
    ('The kitchen is very clean', 'Die Küche ist sehr sauber', 'La cuisine est très propre', 'La cocina está muy limpia'),
    ('I often walk to school', 'Ich gehe oft zu Fuß zur Schule', "Je vais souvent à l'école à pied", 'A menudo voy a la escuela a pie'),
    ('The film was very long', 'Der Film war sehr lang', 'Le film était très long', 'La película fue muy larga'),
    ('Can I open the door', 'Darf ich die Tür öffnen', 'Est-ce que je peux ouvrir la porte', 'Puedo abrir la puerta'),
    ('The cat is sleeping on the sofa', 'Die Katze schläft auf dem Sofa', 'Le chat dort sur le canapé', 'El gato duerme en el sofá'),
    ('We need more milk', 'Wir brauchen mehr Milch', 'Nous avons besoin de plus de lait', 'Necesitamos más leche'),
    ('The hotel is next to the beach', 'Das Hotel liegt neben dem Strand', "L'hôtel est à côté de la plage", 'El hotel está junto a la playa'),
    ('I learn French at school', 'Ich lerne Französisch in der Schule', "J'apprends le français à l'école", 'Aprendo francés en la escuela'),
    ('The doctor is very friendly', 'Der Arzt ist sehr freundlich', 'Le médecin est très gentil', 'El médico es muy amable'),
    ('It is cold outside', 'Draußen ist es kalt', 'Il fait froid dehors', 'Hace frío afuera'),
    ('My father reads the newspaper', 'Mein Vater liest die Zeitung', 'Mon père lit le journal', 'Mi padre lee el periódico'),
    ('The restaurant is full tonight', 'Das Restaurant ist heute Abend voll', 'Le restaurant est complet ce soir', 'El restaurante está lleno esta noche'),
    ('I want to learn to swim', 'Ich möchte schwimmen lernen', 'Je veux apprendre à nager', 'Quiero aprender a nadar'),
    ('The bus leaves in ten minutes', 'Der Bus fährt in zehn Minuten ab', 'Le bus part dans dix minutes', 'El autobús sale en diez minutos'),
    ('She has two children', 'Sie hat zwei Kinder', 'Elle a deux enfants', 'Ella tiene dos hijos'),
    ('The apples are very sweet', 'Die Äpfel sind sehr süß', 'Les pommes sont très sucrées', 'Las manzanas son muy dulces'),
    ('Please speak more slowly', 'Bitte sprechen Sie langsamer', "Parlez plus lentement s'il vous plaît", 'Hable más despacio por favor'),
    ('The office is on the second floor', 'Das Büro ist im zweiten Stock', 'Le bureau est au deuxième étage', 'La oficina está en el segundo piso'),
    ('I am looking for the post office', 'Ich suche die Post', 'Je cherche la poste', 'Busco la oficina de correos'),
    ('The sun is shining', 'Die Sonne scheint', 'Le soleil brille', 'El sol brilla'),
    ('We play football on Saturday', 'Wir spielen am Samstag Fußball', 'Nous jouons au football le samedi', 'Jugamos al fútbol el sábado'),
    ('This room is too small', 'Dieses Zimmer ist zu klein', 'Cette chambre est trop petite', 'Esta habitación es demasiado pequeña'),
    ('I drink tea in the morning', 'Ich trinke morgens Tee', 'Je bois du thé le matin', 'Bebo té por la mañana'),
    ('The city is very old', 'Die Stadt ist sehr alt', 'La ville est très vieille', 'La ciudad es muy antigua'),
    ('He lost his wallet', 'Er hat seine Geldbörse verloren', 'Il a perdu son portefeuille', 'Perdió su cartera'),
    ('The shop is closed on Sunday', 'Der Laden ist am Sonntag geschlossen', 'Le magasin est fermé le dimanche', 'La tienda está cerrada el domingo'),
    ('My room is on the left', 'Mein Zimmer ist links', 'Ma chambre est à gauche', 'Mi habitación está a la izquierda'),
    ('The music is too loud', 'Die Musik ist zu laut', 'La musique est trop forte', 'La música está demasiado alta'),
    ('I will call you tomorrow', 'Ich rufe dich morgen an', "Je t'appellerai demain", 'Te llamaré mañana'),
    ('The children go to bed early', 'Die Kinder gehen früh ins Bett', 'Les enfants se couchent tôt', 'Los niños se acuestan temprano'),
    ('Where is the bathroom', 'Wo ist das Badezimmer', 'Où est la salle de bain', 'Dónde está el baño'),
    ('The market is open every Friday', 'Der Markt ist jeden Freitag geöffnet', 'Le marché est ouvert tous les vendredis', 'El mercado abre todos los viernes'),
    ('I have a lot of work today', 'Ich habe heute viel Arbeit', "J'ai beaucoup de travail aujourd'hui", 'Hoy tengo mucho trabajo'),
    ('The river is very wide', 'Der Fluss ist sehr breit', 'La rivière est très large', 'El río es muy ancho'),
    ('We bought a new table', 'Wir haben einen neuen Tisch gekauft', 'Nous avons acheté une nouvelle table', 'Compramos una mesa nueva'),
    ('My grandfather was a farmer', 'Mein Großvater war Bauer', 'Mon grand-père était agriculteur', 'Mi abuelo era agricultor'),
    ('The tea is still hot', 'Der Tee ist noch heiß', 'Le thé est encore chaud', 'El té todavía está caliente'),
    ('I do not like fish', 'Ich mag keinen Fisch', "Je n'aime pas le poisson", 'No me gusta el pescado'),
    ('The plane lands at noon', 'Das Flugzeug landet am Mittag', "L'avion atterrit à midi", 'El avión aterriza a mediodía'),
    ('She sings very well', 'Sie singt sehr gut', 'Elle chante très bien', 'Ella canta muy bien'),
    ('The street is very quiet', 'Die Straße ist sehr ruhig', 'La rue est très calme', 'La calle es muy tranquila'),
    ('I need to go to the bank', 'Ich muss zur Bank gehen', 'Je dois aller à la banque', 'Tengo que ir al banco'),
    ('The dog wants to go outside', 'Der Hund will nach draußen', 'Le chien veut sortir', 'El perro quiere salir'),
    ('We live near the sea', 'Wir wohnen in der Nähe vom Meer', 'Nous habitons près de la mer', 'Vivimos cerca del mar'),
    ('The lesson starts at eight', 'Der Unterricht beginnt um acht', 'Le cours commence à huit heures', 'La clase empieza a las ocho'),
    ('My coat is in the car', 'Mein Mantel ist im Auto', 'Mon manteau est dans la voiture', 'Mi abrigo está en el coche'),
    ('Do you speak English', 'Sprechen Sie Englisch', 'Parlez-vous anglais', 'Habla usted inglés'),
    ('The cake is in the oven', 'Der Kuchen ist im Ofen', 'Le gâteau est dans le four', 'El pastel está en el horno'),
    ('I am hungry', 'Ich habe Hunger', "J'ai faim", 'Tengo hambre'),
    ('The mountains are covered with snow', 'Die Berge sind mit Schnee bedeckt', 'Les montagnes sont couvertes de neige', 'Las montañas están cubiertas de nieve'),
    ('He is reading a letter', 'Er liest einen Brief', 'Il lit une lettre', 'Él está leyendo una carta'),
    ('The table is made of wood', 'Der Tisch ist aus Holz', 'La table est en bois', 'La mesa es de madera'),
    ('We are waiting for the bus', 'Wir warten auf den Bus', 'Nous attendons le bus', 'Estamos esperando el autobús'),
    ('My bag is very heavy', 'Meine Tasche ist sehr schwer', 'Mon sac est très lourd', 'Mi bolso es muy pesado'),
    ('The garden needs water', 'Der Garten braucht Wasser', "Le jardin a besoin d'eau", 'El jardín necesita agua'),
    ('I work from home on Friday', 'Am Freitag arbeite ich von zu Hause', 'Le vendredi je travaille à la maison', 'Los viernes trabajo desde casa'),
    ('The shoes are too big', 'Die Schuhe sind zu groß', 'Les chaussures sont trop grandes', 'Los zapatos son demasiado grandes'),
    ('Our neighbours are very kind', 'Unsere Nachbarn sind sehr nett', 'Nos voisins sont très gentils', 'Nuestros vecinos son muy amables'),
    ('The computer does not work', 'Der Computer funktioniert nicht', "L'ordinateur ne marche pas", 'El ordenador no funciona'),
    ('I like the blue dress', 'Mir gefällt das blaue Kleid', "J'aime la robe bleue", 'Me gusta el vestido azul'),
    ('The road is closed today', 'Die Straße ist heute gesperrt', "La route est fermée aujourd'hui", 'La carretera está cerrada hoy'),
    ('We had a good time', 'Wir hatten eine schöne Zeit', 'Nous avons passé un bon moment', 'Lo pasamos bien'),
    ('The birds are singing', 'Die Vögel singen', 'Les oiseaux chantent', 'Los pájaros cantan'),
    ('My son is ten years old', 'Mein Sohn ist zehn Jahre alt', 'Mon fils a dix ans', 'Mi hijo tiene diez años'),
    ('The glass is empty', 'Das Glas ist leer', 'Le verre est vide', 'El vaso está vacío'),
    ('I am learning to cook', 'Ich lerne kochen', "J'apprends à cuisiner", 'Estoy aprendiendo a cocinar'),
    ('The party starts at eight', 'Die Party beginnt um acht', 'La fête commence à huit heures', 'La fiesta empieza a las ocho'),
    ('She likes to dance', 'Sie tanzt gern', 'Elle aime danser', 'A ella le gusta bailar'),
    ('The window is open', 'Das Fenster ist offen', 'La fenêtre est ouverte', 'La ventana está abierta'),
    ('We need a bigger car', 'Wir brauchen ein größeres Auto', "Nous avons besoin d'une plus grande voiture", 'Necesitamos un coche más grande'),
    ('The milk is in the fridge', 'Die Milch ist im Kühlschrank', 'Le lait est dans le frigo', 'La leche está en la nevera'),
    ('I cannot find my glasses', 'Ich finde meine Brille nicht', 'Je ne trouve pas mes lunettes', 'No encuentro mis gafas'),
    ('The night was very cold', 'Die Nacht war sehr kalt', 'La nuit était très froide', 'La noche fue muy fría'),
    ('He wants to be a doctor', 'Er möchte Arzt werden', 'Il veut devenir médecin', 'Él quiere ser médico'),
    ('The library is very quiet', 'Die Bibliothek ist sehr ruhig', 'La bibliothèque est très calme', 'La biblioteca es muy tranquila'),
    ('My wife works in an office', 'Meine Frau arbeitet in einem Büro', 'Ma femme travaille dans un bureau', 'Mi esposa trabaja en una oficina'),
    ('The oranges are cheap today', 'Die Orangen sind heute billig', "Les oranges sont bon marché aujourd'hui", 'Las naranjas están baratas hoy'),
    ('I go to bed at eleven', 'Ich gehe um elf ins Bett', 'Je me couche à onze heures', 'Me acuesto a las once'),
    ('The boat is on the lake', 'Das Boot ist auf dem See', 'Le bateau est sur le lac', 'El barco está en el lago'),
    ('We visit our grandparents every summer', 'Wir besuchen jeden Sommer unsere Großeltern', 'Nous rendons visite à nos grands-parents chaque été', 'Visitamos a nuestros abuelos cada verano'),
    ('The chair is broken', 'Der Stuhl ist kaputt', 'La chaise est cassée', 'La silla está rota'),
    ('I want to drink something', 'Ich möchte etwas trinken', 'Je veux boire quelque chose', 'Quiero beber algo'),
    ('The bridge is very long', 'Die Brücke ist sehr lang', 'Le pont est très long', 'El puente es muy largo'),
    ('My daughter loves horses', 'Meine Tochter liebt Pferde', 'Ma fille adore les chevaux', 'Mi hija adora los caballos'),
    ('The wind is very strong today', 'Der Wind ist heute sehr stark', "Le vent est très fort aujourd'hui", 'El viento es muy fuerte hoy'),
    ('Can you repeat that please', 'Können Sie das bitte wiederholen', "Pouvez-vous répéter s'il vous plaît", 'Puede repetirlo por favor'),
    ('The beach is full of people', 'Der Strand ist voller Menschen', 'La plage est pleine de monde', 'La playa está llena de gente'),
    ('I bought a new phone', 'Ich habe ein neues Handy gekauft', "J'ai acheté un nouveau téléphone", 'Compré un teléfono nuevo'),
    ('The fish swims in the water', 'Der Fisch schwimmt im Wasser', "Le poisson nage dans l'eau", 'El pez nada en el agua'),
    ('We often eat pasta', 'Wir essen oft Nudeln', 'Nous mangeons souvent des pâtes', 'Comemos pasta a menudo'),
    ('The room is dark', 'Das Zimmer ist dunkel', 'La pièce est sombre', 'La habitación está oscura'),
    ('I like my new job', 'Meine neue Arbeit gefällt mir', "J'aime mon nouveau travail", 'Me gusta mi nuevo trabajo'),
    ('The door is locked', 'Die Tür ist abgeschlossen', 'La porte est fermée à clé', 'La puerta está cerrada con llave'),
    ('He is my best friend', 'Er ist mein bester Freund', "C'est mon meilleur ami", 'Él es mi mejor amigo'),
    ('The test was very easy', 'Die Prüfung war sehr leicht', "L'examen était très facile", 'El examen fue muy fácil'),
    ('We are going to the market', 'Wir gehen auf den Markt', 'Nous allons au marché', 'Vamos al mercado'),
    ('The horse runs very fast', 'Das Pferd läuft sehr schnell', 'Le cheval court très vite', 'El caballo corre muy rápido'),
    ('I have a small garden', 'Ich habe einen kleinen Garten', "J'ai un petit jardin", 'Tengo un jardín pequeño'),
    ('The shop sells fresh bread', 'Der Laden verkauft frisches Brot', 'Le magasin vend du pain frais', 'La tienda vende pan fresco'),
    ('My hands are cold', 'Meine Hände sind kalt', "J'ai les mains froides", 'Tengo las manos frías'),
    ('The clock on the wall is wrong', 'Die Uhr an der Wand geht falsch', "L'horloge au mur n'est pas à l'heure", 'El reloj de la pared está mal'),
    ('We walk in the forest on Sunday', 'Am Sonntag gehen wir im Wald spazieren', 'Le dimanche nous nous promenons dans la forêt', 'El domingo paseamos por el bosque'),
    ('The pizza is very good', 'Die Pizza ist sehr gut', 'La pizza est très bonne', 'La pizza está muy buena'),
    ('I am going to the doctor', 'Ich gehe zum Arzt', 'Je vais chez le médecin', 'Voy al médico'),
    ('The students are in the classroom', 'Die Schüler sind im Klassenzimmer', 'Les élèves sont dans la classe', 'Los alumnos están en el aula'),
    ('It is very hot in summer', 'Im Sommer ist es sehr heiß', 'Il fait très chaud en été', 'Hace mucho calor en verano'),
    ('My car is white', 'Mein Auto ist weiß', 'Ma voiture est blanche', 'Mi coche es blanco'),
    ('The children like ice cream', 'Die Kinder mögen Eis', 'Les enfants aiment la glace', 'A los niños les gusta el helado'),
    ('I read a good book', 'Ich lese ein gutes Buch', 'Je lis un bon livre', 'Leo un buen libro'),
    ('The lights are on', 'Das Licht ist an', 'La lumière est allumée', 'La luz está encendida'),
    ('We should leave now', 'Wir sollten jetzt gehen', 'Nous devrions partir maintenant', 'Deberíamos irnos ahora'),
    ('The cup is on the table', 'Die Tasse steht auf dem Tisch', 'La tasse est sur la table', 'La taza está en la mesa'),
    ('I like to travel by train', 'Ich reise gern mit dem Zug', "J'aime voyager en train", 'Me gusta viajar en tren'),
    ('The dinner is ready', 'Das Abendessen ist fertig', 'Le dîner est prêt', 'La cena está lista'),
)


def split_of(index: int) -> str:
    """``eval`` for every 5th sentence (index % 5 == 4), else ``train``."""
    return "eval" if index % EVAL_EVERY == EVAL_EVERY - 1 else "train"


def translation_pairs(language: str, n: int | None = None) -> list[TranslationPair]:
    """The sentences of one language (the first ``n``, default all) with references and split.

    Raises:
        ValueError: a language outside :data:`LANGUAGES`.
    """
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r} (choose {', '.join(LANGUAGES)})")
    col = 1 + LANGUAGES.index(language)
    return [TranslationPair(i, language, row[col], row[0], split_of(i))
            for i, row in enumerate(_ROWS[:n])]


def english_references() -> list[str]:
    """The English reference of every sentence, in order."""
    return [row[0] for row in _ROWS]


def whisper_languages() -> frozenset[str]:
    """The language codes Whisper has tokens for (``en``, ``de``, ``fr``, ``es``, ...)."""
    from transformers.models.whisper.tokenization_whisper import (
        LANGUAGES as WHISPER,  # heavy
    )

    return frozenset(WHISPER)


def check_translation_rows(clips: Sequence, source: str) -> None:
    """Refuse a translation manifest row without a known language or an English reference.

    Args:
        clips: the data set's clips in manifest order (:class:`~stackslim.data.Clip`), so that
            clip i is line i + 2 of the CSV (after the header).
        source: the manifest's name for messages.

    Raises:
        DataError: one line naming ``source`` and the line of the first bad row.
    """
    known = whisper_languages()
    for line, clip in enumerate(clips, start=2):
        lang = (clip.get("language") or "").strip()
        if lang not in known:
            raise DataError(f"{source}: line {line}: unknown language {lang!r} (expected a "
                            "Whisper language code such as de, fr, es)")
        if not (clip.get("reference_en") or "").strip():
            raise DataError(f"{source}: line {line}: missing reference_en (the English "
                            "translation of the clip)")
