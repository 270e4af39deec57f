"""Declared verbs: the pool a generated scene draws its game verbs from (``scene.verbs``), what players say to ask
for each one (directly and indirectly), what a character answers, things that are not there, and lines that use a
verb's word while asking for nothing. Used by training/kinds.py (the ``verb_*`` kinds) and training/generate.py
(the verb scenes, ``scenes/<scene>__verbs<n>.json``).

Slots in a player's line: ``{a}`` the first argument (an entity's words, ``me`` for the player, or a value),
``{b}`` the second. A line in ``indirect`` never says the verb itself; one without ``{a}`` is used only when the
scene has exactly one thing that fits. Written for npc_runtime; nothing here is taken from elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from templates import TEMPERS


@dataclass(frozen=True)
class Prop:
    """A thing a verb fits, added to a verb scene that declares the verb (unless the scene has it already)."""

    kind: str  # "objects" or "locations"
    id: str
    description: str


@dataclass(frozen=True)
class Verb:
    name: str
    description: str
    #: (argument name, its type: object, location, character or any; or a tuple of values)
    args: tuple[tuple[str, str | tuple[str, ...]], ...]
    direct: tuple[str, ...]  # imperative cores: "sit down on the {a}" (wrapped in a politeness frame)
    indirect: tuple[str, ...] = ()  # says what is needed, never the verb
    indirect_me: tuple[str, ...] = ()  # the same, when the character argument is the player
    done: tuple[str, ...] = ("There.",)
    props: tuple[Prop, ...] = ()  # what the first entity argument fits (none: any entity of its type)
    missing: tuple[str, ...] = ()  # things (or values) to ask for that a scene does not have
    near: tuple[tuple[str, str], ...] = ()  # (a line using the verb's word and asking nothing, an answer)
    others_only: bool = False  # a character argument is never the player
    refuse: tuple[str, ...] = ()  # the answer to a missing value ({thing}), instead of the temper's MISSING line

    def definition(self) -> dict[str, Any]:
        """The verb as a scene declares it (npc_runtime.scene.VerbDef)."""
        args = [{"name": n, "values": list(t)} if isinstance(t, tuple) else {"name": n, "type": t} for n, t in self.args]
        return {"name": self.name, "description": self.description, "args": args}


def _p(kind: str, *items: tuple[str, str]) -> tuple[Prop, ...]:
    return tuple(Prop(kind, i, d) for i, d in items)


_CHESTS = _p("objects", ("chest", "an iron-bound chest"), ("cupboard", "a tall pine cupboard"), ("hatch", "a trapdoor hatch in the floor"))
_LOCKS = _p("objects", ("strongbox", "a locked strongbox"), ("locker", "a dented steel locker"), ("chest", "an iron-bound chest"))
_FLAMES = _p("objects", ("lantern", "a brass oil lantern"), ("candle", "a fat tallow candle"), ("brazier", "an iron brazier of coals"))

POOL: tuple[Verb, ...] = (
    Verb("sit", "sits down on a seat", (("seat", "object"),),
         direct=("sit down on the {a}", "take a seat on the {a}", "have a sit on the {a}", "park yourself on the {a}"),
         indirect=("You've been on your feet all day. The {a} is free.", "Rest your legs a moment, the {a} won't bite.",
                   "Nobody's using the {a}. Take the weight off."),
         done=("Don't mind if I do.", "Ah, that's better.", "Just for a moment, then."),
         props=_p("objects", ("stool", "a three-legged stool"), ("bench", "a worn wooden bench"), ("armchair", "a sagging armchair")),
         missing=("sofa", "throne", "hammock", "rocking chair"),
         near=(("I had to sit through a three-hour speech yesterday.", "Sounds dreadful. I'd have dozed off."),
               ("My grandmother used to sit by her window all afternoon.", "Sounds like a peaceful woman."))),
    Verb("open", "opens a lid, door or container", (("thing", "object"),),
         direct=("open the {a}", "get the {a} open", "pop the {a} open", "lift the lid of the {a}"),
         indirect=("I wonder what's inside the {a}.", "Let's have a look inside the {a}.", "I'd love to see what's in the {a}."),
         done=("There. Have a look.", "It's open. Mind the hinges.", "There you are, take a peek."),
         props=_CHESTS, missing=("safe", "wardrobe", "trunk"),
         near=(("My cousin wants to open a shop of his own one day.", "Good luck to him. It's hard work."),
               ("I'm trying to keep an open mind about the new mayor.", "Wise. Give him a season."))),
    Verb("close", "shuts a lid, door or container", (("thing", "object"),),
         direct=("close the {a}", "shut the {a}", "get the {a} shut", "close up the {a}"),
         indirect=("There's a terrible draught coming from the {a}.", "Somebody left the {a} wide open.",
                   "I don't like the {a} gaping like that."),
         done=("Shut tight.", "There, closed.", "That's better, no more draught."),
         props=_CHESTS, missing=("wardrobe", "gate", "shutters"),
         near=(("That was a close call on the road today.", "Glad you made it in one piece."),
               ("My sister and I were close as children.", "Family is worth keeping close."))),
    Verb("knock", "knocks on a door", (("door", "location"),),
         direct=("knock on the {a}", "give the {a} a knock", "rap on the {a}", "bang on the {a} for me"),
         indirect=("I think someone's waiting behind the {a}.", "Let whoever's behind the {a} know we're here."),
         done=("Knock, knock. Anyone there?", "Let's see who answers.", "That should wake them."),
         props=_p("locations", ("back_door", "the back door"), ("side_door", "a narrow side door"), ("cellar_door", "the cellar door")),
         missing=("garden gate", "vault door", "front gate"),
         near=(("Knock on wood, the weather holds for the fair.", "Let's hope so."),
               ("That fall knocked the wind right out of me.", "Take it easy for a bit."))),
    Verb("point", "points at something", (("target", "any"),),
         direct=("point at the {a}", "point out the {a} for me", "show me which is the {a}", "point to the {a}"),
         indirect=("I can't tell which one is the {a}.", "Where's the {a}? I can't spot it."),
         done=("Right there. See it?", "That one, there.", "Just there, look."),
         missing=("statue", "well", "fountain"),
         near=(("What's the point of all this rain?", "Keeps the crops happy, I suppose."),
               ("At this point I'm too tired to argue.", "Then don't. Rest a while."))),
    Verb("wave", "waves at someone", (("who", "character"),),
         direct=("wave at {a}", "give {a} a wave", "wave to {a}", "wave hello to {a}"),
         indirect=("{a} is looking this way. Say hello without shouting.", "{a} hasn't noticed us yet. Catch their eye, would you?"),
         indirect_me=("I'm over here! Can you see me?",),
         done=("Hello there!", "There, a friendly wave.", "Hello, hello!"),
         missing=(),
         near=(("The waves were huge at the harbour this morning.", "Stay off the water then."),
               ("A wave of tiredness just hit me.", "Sit down before you fall down."))),
    Verb("bow", "bows to someone", (("to", "character"),),
         direct=("bow to {a}", "give {a} a proper bow", "take a bow for {a}", "make a bow to {a}"),
         indirect=("{a} is a guest of honour here. Show some respect.", "Mind your manners in front of {a}."),
         indirect_me=("Do you know who I am? Show some respect.",),
         done=("At your service.", "With all respect.", "Honoured, truly."),
         near=(("I tied a bow on my sister's present.", "She'll like that."),
               ("The old fiddler's bow snapped mid-song last night.", "Bad luck. Hope he has a spare."))),
    Verb("salute", "salutes someone", (("to", "character"),),
         direct=("salute {a}", "give {a} a salute", "snap {a} a smart salute"),
         indirect=("{a} outranks us both, you know.", "{a} served twenty years. Honour that."),
         indirect_me=("Captain on deck! Well, nearly.",),
         done=("At attention!", "With respect!", "Present and correct."),
         near=(("I salute your patience with this crowd.", "Thank you kindly."),)),
    Verb("follow", "follows someone", (("who", "character"),),
         direct=("follow {a}", "come along after {a}", "stay close behind {a}", "walk with {a}"),
         indirect=("{a} knows the way. Keep up with them.", "Don't lose sight of {a}."),
         indirect_me=("I know a shortcut. This way, come on.", "I'll lead. Stay on my heels."),
         done=("Lead on.", "Right behind you.", "I'm coming."),
         near=(("I don't follow the news much.", "Neither do I. It's all bad anyway."),
               ("The spring that followed the flood was the best in years.", "Funny how that goes."))),
    Verb("attack", "attacks someone", (("target", "character"),),
         direct=("attack {a}", "go for {a}", "strike {a}", "take a swing at {a}"),
         indirect=("{a} just insulted my mother. Teach them a lesson.", "{a} is the thief! Don't let them get away with it."),
         done=("You asked for it!", "Have at you!", "Enough talk!"),
         others_only=True,
         near=(("My uncle had a heart attack last spring.", "I'm sorry. I hope he's well now."),)),
    Verb("defend", "stands guard over someone", (("who", "character"),),
         direct=("defend {a}", "protect {a}", "stand guard over {a}", "keep {a} safe"),
         indirect=("Nobody's watching out for {a}, and it's getting rough in here.", "Those men are eyeing {a}."),
         indirect_me=("I think someone's following me, and they look armed.", "Those bandits are after me!"),
         done=("Nobody gets past me.", "Stay behind me.", "Let them try."),
         near=(("My brother has to defend his work before the guild next week.", "Wish him luck from me."),)),
    Verb("heal", "tends someone's wounds", (("who", "character"),),
         direct=("heal {a}", "patch {a} up", "see to {a}", "bandage {a}"),
         indirect=("{a} took a nasty fall and is bleeding.", "{a} has a deep cut on the arm."),
         indirect_me=("I've cut my hand open and it won't stop bleeding.", "My leg's badly hurt. I can barely stand."),
         done=("Hold still, this will sting.", "There. Good as new, nearly.", "Easy now, it's only a scratch."),
         near=(("They say time heals the old quarrel between our families.", "Let's hope it does."),)),
    Verb("trade", "trades an object with someone", (("item", "object"), ("with", "character")),
         direct=("trade the {a} with {b}", "swap the {a} with {b}", "barter the {a} with {b}"),
         indirect=("{b} has been eyeing the {a} all day. Make a deal?", "{b} wants the {a} and has coin to spare."),
         done=("A fair trade.", "Done and done.", "Pleasure doing business."),
         near=(("Trade's been slow at the market all week.", "It'll pick up."),
               ("I learned my trade from my father.", "The best way to learn one."))),
    Verb("use", "uses an object", (("item", "object"),),
         direct=("use the {a}", "put the {a} to use", "try the {a}", "make use of the {a}"),
         indirect=("Can't you sort this out with the {a}?", "The {a} is made for exactly this."),
         done=("Let's see if it works.", "Like this, see?", "Easy when you know how."),
         near=(("It's no use arguing with my landlord.", "Some people never listen."),
               ("I used to live by the sea.", "Do you miss it?"))),
    Verb("light", "lights a lamp, candle or fire", (("thing", "object"),),
         direct=("light the {a}", "get the {a} lit", "put a flame to the {a}", "light up the {a}"),
         indirect=("It's getting awfully dark in here.", "I can barely see my own hands.", "We could use some light from the {a}."),
         done=("There, that's better.", "Let there be light.", "Mind your eyes, it's bright."),
         props=_FLAMES, missing=("chandelier", "bonfire", "lamp post"),
         near=(("I packed light for this trip.", "Wise. Less to carry."),
               ("Light rain is coming this evening, they say.", "Good for the gardens."))),
    Verb("extinguish", "puts out a flame", (("thing", "object"),),
         direct=("put out the {a}", "extinguish the {a}", "snuff out the {a}", "douse the {a}"),
         indirect=("That {a} is smoking something awful.", "We should save the oil, it's late. The {a}, please."),
         done=("Out it goes.", "There, it's out.", "All dark now."),
         props=_FLAMES, missing=("bonfire", "fireplace", "torch"),
         near=(("The fire brigade was out all night in the north quarter.", "Busy night for them."),)),
    Verb("pour", "pours a drink for someone", (("drink", ("tea", "ale", "water", "cider")), ("for", "character")),
         direct=("pour {b} some {a}", "pour a cup of {a} for {b}", "fill a mug with {a} for {b}"),
         indirect=("{b} looks thirsty. Some {a}, maybe?", "{b} has come a long way and could use some {a}."),
         indirect_me=("I'm parched. Some {a} would be lovely.", "A glass of {a} would go down well right now."),
         done=("Here, drink up.", "Careful, it's full.", "There you go."),
         missing=("milk", "wine", "coffee", "brandy"), refuse=("I've no {thing}, {addr}.", "No {thing} here, sorry."),
         near=(("It's been pouring rain since dawn.", "Good day to stay inside."),)),
    Verb("stir", "stirs a pot", (("pot", "object"),),
         direct=("stir the {a}", "give the {a} a stir", "keep the {a} stirred"),
         indirect=("I think the {a} is starting to burn.", "Something smells like it's sticking in the {a}."),
         done=("Round and round.", "Won't stick now.", "Smells right, too."),
         props=_p("objects", ("cauldron", "a bubbling cauldron"), ("stew_pot", "a pot of stew on the hob"), ("soup_pot", "a big pot of soup")),
         missing=("kettle", "punch bowl"),
         near=(("That news caused quite a stir in town.", "I heard. Folk talk of nothing else."),)),
    Verb("kneel", "kneels down", (),
         direct=("kneel", "get down on one knee", "kneel down"),
         indirect=("Get low, quick, before they see us over the counter!", "Get down to my level, I can't reach up there."),
         done=("There. My knees aren't what they were.", "As you wish.", "Down I go."),
         near=(("My knees ache whenever it rains.", "Mine too, some days."),)),
    Verb("hide", "hides in a place", (("spot", "location"),),
         direct=("hide in the {a}", "duck into the {a}", "get into the {a} and stay quiet", "go hide in the {a}"),
         indirect=("The guards are coming! Quick, the {a}!", "They mustn't find you. The {a}, now!"),
         done=("Not a sound.", "Shh. I'm not here.", "They'll never look in here."),
         props=_p("locations", ("alcove", "a dark alcove"), ("storeroom", "a cramped storeroom"), ("crawlspace", "a low crawlspace")),
         missing=("attic", "secret passage"),
         near=(("I can't hide how tired I am today.", "Then rest a while."),)),
    Verb("search", "searches a place", (("place", "location"),),
         direct=("search the {a}", "look through the {a}", "have a rummage in the {a}", "go through the {a}"),
         indirect=("I think I dropped my ring somewhere by the {a}.", "My purse must have fallen near the {a}."),
         done=("Let's see what turns up.", "I'll look high and low.", "Nothing escapes me."),
         missing=("attic", "stables", "cellar"),
         near=(("I've been searching for a good tailor for weeks.", "Ask around the market."),)),
    Verb("inspect", "looks closely at an object", (("thing", "object"),),
         direct=("inspect the {a}", "take a close look at the {a}", "examine the {a}", "look the {a} over"),
         indirect=("Something looks wrong with the {a}, doesn't it?", "I'm not sure the {a} is genuine."),
         done=("Hm. Let me see.", "Looks sound to me.", "Let me have a proper look."),
         missing=("painting", "compass", "necklace"),
         near=(("The inspector came by my shop yesterday.", "I hope it went well."),)),
    Verb("unlock", "unlocks something", (("thing", "object"),),
         direct=("unlock the {a}", "get the {a} unlocked", "undo the lock on the {a}"),
         indirect=("What's locked away in the {a}?", "I need what's in the {a}, but it's locked."),
         done=("Click. There you are.", "It's unlocked.", "There. Mind what you take."),
         props=_LOCKS, missing=("safe", "vault"),
         near=(("Reading unlocks whole worlds, my teacher used to say.", "A wise teacher."),)),
    Verb("lock", "locks something", (("thing", "object"),),
         direct=("lock the {a}", "lock up the {a}", "lock the {a} tight"),
         indirect=("There are thieves about tonight. The {a} isn't secure.", "Anyone could just help themselves from the {a}."),
         done=("Locked tight.", "Nobody's getting in there now.", "Safe as houses."),
         props=_LOCKS, missing=("safe", "vault", "gate"),
         near=(("My little brother got locked out of the house again.", "Poor lad."),)),
    Verb("sharpen", "sharpens a blade", (("blade", "object"),),
         direct=("sharpen the {a}", "put an edge on the {a}", "hone the {a}", "grind the {a} sharp"),
         indirect=("That {a} couldn't cut butter.", "The {a} has gone blunt."),
         done=("Sharp enough to shave with.", "There. Keen again.", "Mind your fingers now."),
         props=_p("objects", ("knife", "a kitchen knife"), ("axe", "a wood axe"), ("sword", "a notched short sword")),
         missing=("scythe", "sabre"),
         near=(("I need to sharpen up my card game.", "Practice makes perfect."),)),
    Verb("feed", "feeds an animal", (("animal", ("cat", "dog", "horse", "goat")),),
         direct=("feed the {a}", "give the {a} something to eat", "put out some food for the {a}"),
         indirect=("The {a} looks hungry.", "Has anyone fed the {a} today?", "The {a} keeps looking at its empty bowl."),
         done=("There you go, eat up.", "Hungry little thing.", "That'll keep it quiet."),
         missing=("parrot", "pig", "donkey"),
         near=(("I'm fed up with this weather.", "It'll turn soon enough."),)),
    Verb("emote", "makes a gesture", (("gesture", ("nod", "shrug", "wink", "grin")),),
         direct=("give me a {a}", "do a {a} for me", "give us a {a}, go on"),
         done=("There.", "Like that?", "Happy now?"),
         missing=("curtsy", "high five"), refuse=("I don't do {athing}, {addr}.", "{athing}? Not from me."),
         near=(("My aunt gave me a nod across the church, nothing more.", "Families, eh?"),)),
    Verb("play", "plays a tune on an instrument", (("instrument", "object"),),
         direct=("play the {a}", "give us a tune on the {a}", "strike up a song on the {a}"),
         indirect=("It's too quiet in here. The {a} could liven things up.", "I haven't heard the {a} in years."),
         done=("Here's one my mother taught me.", "Just a short one.", "Don't expect miracles."),
         props=_p("objects", ("fiddle", "a battered fiddle"), ("lute", "a six-string lute"), ("tin_whistle", "a tin whistle")),
         missing=("piano", "harp", "drum"),
         near=(("The children were playing in the square all afternoon.", "Good to hear them laughing."),)),
    Verb("sing", "sings a song", (("song", ("lullaby", "ballad", "shanty")),),
         direct=("sing a {a}", "sing us a {a}", "give us a {a}, go on"),
         indirect=("I could really use a {a} to lift my spirits.", "Nothing like a good {a} on a night like this."),
         done=("Ahem. Here goes.", "Only one verse, mind.", "Don't laugh."),
         missing=("hymn", "waltz", "anthem"), refuse=("I don't know {athing}, {addr}.", "{athing}? I never learned one."),
         near=(("The birds were singing before sunrise today.", "Early birds, those."),)),
    Verb("dance", "dances a few steps", (),
         direct=("dance", "dance a jig for us", "show me a few dance steps"),
         indirect=("Listen to that music! Your feet must be itching.", "Go on, show us those famous feet of yours."),
         done=("Just a few steps.", "Don't laugh, now.", "Hop, skip, and there."),
         near=(("We danced around the question for an hour at the council.", "Councils are like that."),)),
    Verb("clean", "cleans an object", (("thing", "object"),),
         direct=("clean the {a}", "wipe down the {a}", "give the {a} a scrub", "polish the {a}"),
         indirect=("The {a} is filthy.", "Look at the dust on that {a}."),
         done=("Spotless now.", "There, good as new.", "Shines like new."),
         missing=("chandelier", "carpet"),
         near=(("I came clean to my father about the broken cart.", "Honest of you."),)),
    Verb("repair", "repairs a broken object", (("thing", "object"),),
         direct=("repair the {a}", "fix the {a}", "mend the {a}", "patch up the {a}"),
         indirect=("The {a} has a crack in it.", "I think the {a} is broken."),
         done=("Should hold now.", "There. Fixed.", "Good as new, nearly."),
         missing=("wagon wheel", "clock"),
         near=(("The road to the capital is under repair again.", "It always is."),)),
    Verb("ring", "rings a bell", (("bell", "object"),),
         direct=("ring the {a}", "give the {a} a ring", "sound the {a}"),
         indirect=("Let everyone know supper's ready.", "Call everybody in, would you?"),
         done=("Everyone heard that.", "Loud enough for you?", "That'll bring them running."),
         props=_p("objects", ("bell", "a brass hand bell"), ("gong", "a bronze gong")),
         missing=("church bell", "doorbell"),
         near=(("That name rings a bell, but I can't place it.", "It'll come to you."),)),
    Verb("read", "reads something aloud", (("text", "object"),),
         direct=("read the {a} aloud", "read out the {a}", "read me the {a}"),
         indirect=("I never learned my letters. What does the {a} say?", "My eyes are too tired for the {a}."),
         done=("Let's see what it says.", "Listen closely.", "Ahem. Here goes."),
         props=_p("objects", ("letter", "a sealed letter"), ("notice", "a notice pinned to the wall"), ("ledger", "a thick ledger")),
         missing=("newspaper", "scroll"),
         near=(("I read somewhere that the winter will be harsh.", "Best stock up on firewood."),)),
    Verb("climb", "climbs up to a place", (("spot", "location"),),
         direct=("climb up to the {a}", "get up onto the {a}", "climb the {a}"),
         indirect=("You'd see the whole town from the {a}.", "Someone needs to check the {a} for leaks."),
         done=("Up I go.", "Hold steady, I'm going up.", "Not as young as I was."),
         props=_p("locations", ("rooftop", "the flat rooftop"), ("hay_loft", "the hay loft"), ("bell_tower", "the old bell tower")),
         missing=("chimney", "cliff", "mast"),
         near=(("Prices keep climbing every week.", "Don't I know it."),)),
    Verb("wrap", "wraps an object as a parcel", (("item", "object"),),
         direct=("wrap the {a}", "wrap up the {a} for me", "put the {a} in paper and string"),
         indirect=("The {a} is a gift. It should look nice.", "I'm sending the {a} to my mother."),
         done=("Paper and string. There.", "Wrapped and tied.", "Neat as you like."),
         missing=("painting", "vase"),
         near=(("Let's wrap this up, it's getting late.", "Fair enough. Safe home."),)),
    Verb("hug", "hugs someone", (("who", "character"),),
         direct=("hug {a}", "give {a} a hug", "give {a} a big hug"),
         indirect=("{a} has been crying all morning.", "{a} just got some terrible news."),
         indirect_me=("I've had the worst day of my life.", "I just heard my old dog died."),
         done=("Come here.", "There, there.", "It'll be all right."),
         near=(("The road hugs the cliff for miles past the village.", "Mind the edge, then."),)),
    Verb("bless", "blesses someone", (("who", "character"),),
         direct=("bless {a}", "give {a} your blessing", "say a blessing over {a}"),
         indirect=("{a} sets out on a long journey tomorrow.", "{a} is getting married in the morning."),
         indirect_me=("I leave on a long and dangerous journey tomorrow.",),
         done=("Go safely, and come back.", "May the road be kind.", "Luck go with you."),
         near=(("Bless me, it's cold out today!", "Come stand by the fire then."),)),
    Verb("signal", "signals with a coloured flag", (("colour", ("red", "green", "white")),),
         direct=("signal {a}", "wave the {a} flag", "raise the {a} flag"),
         done=("Flag's up.", "They'll see that.", "Signal sent."),
         missing=("blue", "yellow"), refuse=("There's no {thing} flag, {addr}.", "We've no {thing} flag here."),
         near=(("The signal on my radio keeps cutting out.", "Try by the window."),)),
)

VERBS: dict[str, Verb] = {v.name: v for v in POOL}
#: Verbs only the held-out verb scenes declare: the held-out split measures verbs never trained on, too.
HELDOUT_VERBS = frozenset({"salute", "extinguish", "sharpen", "wrap", "bless", "signal"})

#: How a player wraps an imperative core ("sit down on the stool") into a request.
FRAMES = ("{core}, please.", "Would you {core}?", "Go on, {core}.", "I'd like you to {core}.", "Could you {core} for me?",
          "{core}, if you would.", "Can you {core}?", "Please {core}.", "Right, {core}.", "Do me a favour and {core}.")

#: What each temper says before doing what a declared verb asks (optional, 50%).
ACKS: dict[str, tuple[str, ...]] = {
    "warm": ("Of course, {addr}.", "Gladly."), "cheerful": ("Happily!", "Ooh, why not!"), "formal": ("Certainly.", "As you wish."),
    "grumpy": ("Fine.", "If it shuts you up."), "arrogant": ("If I must.", "Watch and learn."),
    "anxious": ("Oh, um, all right.", "Okay, okay."), "shy": ("Um, okay.", "If you like."), "belligerent": ("Hmph. Fine.", "Don't push it."),
}
#: The answer when a declared verb's argument is not there: {thing} the thing (or value) asked for.
MISSING: dict[str, tuple[str, ...]] = {
    "warm": ("Sorry, {addr}, I don't see any {thing} here.", "I would, but there's no {thing} around."),
    "cheerful": ("{athing}? Not here, I'm afraid!", "No {thing} in sight, sorry!"),
    "formal": ("I'm afraid there is no {thing} here.", "Regrettably, there is no {thing} to hand."),
    "grumpy": ("There's no {thing} here.", "Do you see {athing}? Neither do I."),
    "arrogant": ("{athing}? There's none here, obviously.", "Look around. No {thing}."),
    "anxious": ("Oh, um, there isn't {athing} here. Sorry!", "{athing}? I don't think there is one."),
    "shy": ("Um, there's no {thing} here.", "I can't, there's no {thing}."),
    "belligerent": ("No {thing} here. Stop wasting my time.", "{athing}? Where? Get out."),
}
#: ... and when a person is not there.
MISSING_PERSON: dict[str, tuple[str, ...]] = {
    t: ("{thing} isn't here.", "I don't see {thing} anywhere.") for t in TEMPERS
}

