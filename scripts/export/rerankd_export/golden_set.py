"""The golden query groups: English, of varied lengths (group 4 holds a passage longer than 512 tokens).

The exporter scores them with the eager model into golden.json, which the server checks its own scores
and lower precisions against; the device kit's fidelity.py asks two servers the same groups.
Owns: the pairs, and the sample pair the tokenizer's template is checked with. Must never: import
anything (plain data, readable without torch).
"""

LONG_EARTHQUAKE_PASSAGE = (
    "An earthquake is the shaking of the surface of the Earth that results from a sudden release of "
    "energy in the lithosphere, the rigid outer shell of the planet. The lithosphere is broken into a "
    "number of large and small tectonic plates that move slowly over the hotter, softer mantle beneath "
    "them, at speeds of a few centimetres a year, roughly as fast as fingernails grow. Where two plates "
    "meet, their edges do not slide smoothly. Friction locks the rocks together while the plates keep "
    "moving, so strain builds up in the surrounding crust for decades or even centuries. When the "
    "stress finally exceeds the strength of the rock, or the friction that holds the fault closed, the "
    "rocks slip suddenly along the fault and the stored elastic energy is released as seismic waves "
    "that travel through the Earth in every direction. The point underground where the rupture begins "
    "is called the hypocentre or focus, and the point on the surface directly above it is called the "
    "epicentre. Most earthquakes happen along plate boundaries. At divergent boundaries, such as the "
    "Mid-Atlantic Ridge, plates move apart and new crust forms; the earthquakes there are usually "
    "shallow and moderate. At convergent boundaries, one plate is pushed beneath another in a process "
    "called subduction, and these zones produce the largest earthquakes ever recorded, including the "
    "1960 Chile earthquake, the 2004 Indian Ocean earthquake and the 2011 Tohoku earthquake in Japan. "
    "Subduction earthquakes can also lift or drop large areas of the sea floor, which displaces the "
    "water above and generates tsunamis that cross entire oceans. At transform boundaries, such as the "
    "San Andreas Fault in California or the North Anatolian Fault in Turkey, two plates slide "
    "horizontally past each other, and the earthquakes are often shallow and very destructive to "
    "nearby cities. Not every earthquake occurs on a plate boundary. Intraplate earthquakes happen "
    "inside plates, where old faults are reactivated by stresses transmitted from far away; the New "
    "Madrid earthquakes of 1811 and 1812 in the central United States are a famous example. Volcanic "
    "activity causes earthquakes as magma forces its way through the crust, and scientists watch these "
    "small tremors closely because they can signal that an eruption is coming. Human activity can "
    "trigger earthquakes too: filling large reservoirs behind dams, injecting waste water deep "
    "underground, extracting gas or oil, mining, and geothermal projects all change the pressure on "
    "faults and have been linked to induced seismicity. The size of an earthquake is described by its "
    "magnitude, which measures the energy released at the source. The Richter scale, developed in "
    "1935, has largely been replaced by the moment magnitude scale, which works better for very large "
    "events. Each whole number step on the scale corresponds to about thirty-two times more energy. "
    "Intensity, by contrast, describes how strongly the shaking is felt at a particular place and "
    "depends on the distance from the epicentre, the depth of the rupture and the local soil. Soft, "
    "water-saturated ground can amplify shaking and even behave like a liquid, a process called "
    "liquefaction, which topples buildings that stand on firm foundations elsewhere. Seismologists "
    "record earthquakes with networks of seismometers, locate them by comparing the arrival times of "
    "the fast primary waves and the slower secondary waves, and study the waves to learn about the "
    "structure of the Earth's interior. Although the exact time of an earthquake cannot be predicted, "
    "hazard maps estimate how likely strong shaking is in each region over the coming decades. "
    "Building codes, early warning systems that send alerts seconds before the strongest waves arrive, "
    "public drills, and careful land-use planning save many lives. Aftershocks, smaller earthquakes "
    "that follow the main shock on the same fault, can continue for months or years and can damage "
    "buildings that were already weakened. Historical records, trenches dug across faults, and layers "
    "of sediment left by ancient tsunamis help scientists reconstruct how often large earthquakes "
    "happened in the past, which is the best guide available to what may happen in the future."
)

GOLDEN_GROUPS = [
    {
        "query": "what is the capital of France",
        "documents": [
            "Paris is the capital and largest city of France.",
            "Berlin is the capital and largest city of Germany.",
            "Photosynthesis is the process by which green plants use sunlight, water and carbon dioxide "
            "to make glucose and release oxygen.",
            "The stock market closed lower on Tuesday as investors worried about rising interest rates "
            "and weak earnings from large technology companies.",
            "Basketball is a team sport in which two teams of five players try to score points by "
            "shooting a ball through a hoop ten feet above the floor.",
            "France",
            "The Great Barrier Reef, off the coast of Queensland in north-eastern Australia, is the "
            "largest coral reef system in the world. It stretches for more than two thousand kilometres "
            "and is made up of nearly three thousand individual reefs and hundreds of islands. The reef "
            "is built by billions of tiny organisms known as coral polyps, and it supports an enormous "
            "variety of life, including fish, turtles, sharks, dolphins and many kinds of sea birds. "
            "Scientists are worried about the health of the reef because warmer ocean temperatures cause "
            "coral bleaching, in which the corals expel the algae that live in their tissues and give "
            "them their colour. Pollution from farms, coastal development and outbreaks of crown-of-"
            "thorns starfish add to the pressure on the reef.",
        ],
    },
    {
        "query": "how do plants make their own food",
        "documents": [
            "Plants make their own food through photosynthesis, using light energy captured by "
            "chlorophyll to turn carbon dioxide and water into sugar.",
            "chlorophyll",
            "Photosynthesis takes place mainly in the leaves, inside small structures called "
            "chloroplasts. In the light-dependent reactions, which happen in the thylakoid membranes, "
            "chlorophyll absorbs red and blue light and uses that energy to split water molecules. This "
            "releases oxygen as a by-product and produces the energy carriers ATP and NADPH. In the "
            "second stage, known as the Calvin cycle, which takes place in the stroma, the plant uses "
            "ATP and NADPH to fix carbon dioxide from the air into three-carbon sugars. These sugars are "
            "then used to build glucose, sucrose and starch, which the plant burns for energy or stores "
            "for later, and cellulose, which forms the walls of its cells. Almost all life on Earth "
            "depends, directly or indirectly, on this process.",
            "Most animals get their energy by eating plants or other animals.",
            "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
            "Gardeners add compost to soil to improve its structure and provide nutrients for roots.",
        ],
    },
    {
        "query": "who invented basketball",
        "documents": [
            "Basketball was invented in December 1891 by James Naismith, a Canadian physical education "
            "instructor at a YMCA training school in Springfield, Massachusetts.",
            "Naismith",
            "The National Basketball Association was founded in 1946 and today has thirty teams in the "
            "United States and Canada.",
            "Volleyball was created in 1895 by William G. Morgan as a less strenuous indoor alternative "
            "to basketball.",
            "The first game of basketball was played with a soccer ball and two peach baskets nailed to "
            "the railing of a gymnasium balcony. Naismith wrote thirteen rules for the new game, which "
            "he designed to keep his students active during the long New England winter. Players were "
            "not allowed to run with the ball, and after each basket someone had to climb a ladder to "
            "retrieve it, because the bottoms of the baskets were not removed until years later. The "
            "game spread quickly through the YMCA network and to colleges across the country. The "
            "dribble, the backboard and the open net were all introduced in the following decades, and "
            "basketball became an Olympic sport at the 1936 Summer Games in Berlin, where Naismith "
            "himself watched the final.",
            "Soccer is the most popular sport in the world by number of fans and players.",
            "dribble",
        ],
    },
    {
        "query": "why did the stock market fall today",
        "documents": [
            "Stocks fell sharply today after the central bank signalled that interest rates would stay "
            "high for longer than investors had expected.",
            "dividends",
            "A bear market is usually defined as a decline of twenty percent or more from a recent peak.",
            "Wall Street ended the session in the red on Thursday. The broad index lost 2.1 percent and "
            "the technology-heavy index dropped 3.4 percent, its worst day in two months, as a stronger "
            "than expected inflation report pushed bond yields higher. Chip makers and other large "
            "growth companies led the decline, while utilities and consumer staples held up better. "
            "Oil prices rose on supply worries, the dollar gained against most major currencies, and "
            "gold slipped. Analysts said traders were now betting that the central bank would delay any "
            "cut in interest rates until next year, and several warned that markets could stay volatile "
            "ahead of next week's earnings reports from the largest banks.",
            "The farmers market is open every Saturday morning from eight until noon.",
            "rain",
        ],
    },
    {
        "query": "what causes earthquakes",
        "documents": [
            "Most earthquakes are caused by the sudden release of energy when rocks along a fault slip "
            "past each other.",
            "earthquake",
            LONG_EARTHQUAKE_PASSAGE,
            "Volcanoes form where magma from deep inside the Earth reaches the surface.",
            "The Richter scale was developed in 1935 by Charles Richter to measure the magnitude of "
            "earthquakes.",
            "Berlin is the capital of Germany.",
        ],
    },
    {
        "query": "how long should I boil an egg",
        "documents": [
            "For a soft-boiled egg, cook it in boiling water for about six minutes; for a hard-boiled egg, "
            "about ten to twelve minutes.",
            "eggs",
            "Chickens lay roughly one egg a day when they have enough light and food.",
            "To cook dried pasta, bring a large pot of salted water to a rolling boil, add the pasta and "
            "stir it during the first minute so that the pieces do not stick together. Most shapes need "
            "between eight and twelve minutes; check the packet and taste a piece a minute or two "
            "before the time is up. The pasta should be tender but still slightly firm in the centre. "
            "Save a cup of the starchy cooking water before you drain it, because a splash of that water "
            "helps the sauce cling to the pasta. Do not rinse the pasta unless you are making a cold "
            "salad, since rinsing washes away the starch.",
            "Water boils at 100 degrees Celsius at sea level, and at a lower temperature at high altitude.",
            "The stock market rose for the third day in a row.",
            "Paris is the capital of France.",
        ],
    },
]

SAMPLE_QUERY = "what is the capital of France"
SAMPLE_DOC = "Paris is the capital and largest city of France."
