// The semantic cache's evaluation set: pairs of prompts where the second is asked after the
// first was answered. Paraphrases should be answered from the cache; every other category
// is a near miss that must not be (the cached answer would be wrong). Hand-written pairs
// first, then pairs generated from templates over word lists, so each near-miss category
// has dozens of cases in different wordings. The bench (bench/semantic.ts) stores every
// pair's first prompt in one workspace and asks every second prompt, so a hit from another
// pair's entry counts as false too.

/** One side of a pair: a last user turn, with the conversation it ends (same for both sides unless the category is about it). */
export interface Ask {
  user: string;
  system?: string;
  /** Tool names offered (each a minimal function tool). */
  tools?: string[];
  /** Earlier turns, alternating user and assistant. */
  history?: string[];
}

export const NEAR_MISSES = ['hostile', 'function_word', 'negation', 'order', 'quantity', 'unit', 'date', 'id', 'entity', 'comparative', 'language', 'code_language',
  'system_prompt', 'tools', 'last_turn', 'topic'] as const;
export type Category = 'paraphrase' | typeof NEAR_MISSES[number];

export interface Pair {
  /** A Category here; any name in a set read by `--pairs`. */
  category: string;
  a: Ask;
  b: Ask;
  /** Hand-written (true) or generated from a template. */
  hand: boolean;
}

const SUPPORT = 'You are the support assistant for Acme Cloud. Answer briefly.';

/** Hand-written paraphrases: the same question reworded (words added, dropped, reordered, or swapped for synonyms). */
const PARAPHRASES: [string, string][] = [
  ['How do I reset my password?', 'I forgot my password, how can I reset it?'],
  ['How do I cancel my subscription?', 'What are the steps to cancel my subscription?'],
  ['What is the capital of France?', "What's the capital city of France?"],
  ['How can I change my billing address?', 'How do I update the billing address on my account?'],
  ['Where can I download my invoices?', 'Where do I download my invoices?'],
  ['How do I reverse a string in Python?', 'How can I reverse a string in Python?'],
  ['What are your support hours?', 'What hours is support available?'],
  ['Can I get a refund for my last payment?', 'Is it possible to get a refund for my last payment?'],
  ['How do I enable two-factor authentication?', 'How can I turn on two-factor authentication?'],
  ['Explain what a hash table is.', 'What is a hash table?'],
  ['What does HTTP status 404 mean?', 'What is the meaning of HTTP status 404?'],
  ['How do I add a team member to my workspace?', 'How can I add a team member to my workspace?'],
  ['Is a tomato a fruit or a vegetable?', 'Is a tomato a vegetable or a fruit?'],
  ['What is the boiling point of water at sea level?', 'At sea level, what is the boiling point of water?'],
  ['Summarize the plot of Hamlet.', 'Give me a summary of the plot of Hamlet.'],
  ['How do I export my data?', 'How can I export all my data?'],
  ['What payment methods do you accept?', 'Which payment methods do you accept?'],
  ['How do I delete my account?', 'How can I delete my account permanently?'],
  ['Why is my deployment failing?', 'Why does my deployment keep failing?'],
  ['How long does shipping take?', 'How long does shipping usually take?'],
  ['What is the difference between TCP and UDP?', "What's the difference between TCP and UDP?"],
  ['How do I install Node.js on Ubuntu?', 'How can I install Node.js on Ubuntu?'],
  ['Tell me a fun fact about octopuses.', 'Give me a fun fact about octopuses.'],
  ['What is photosynthesis?', 'Explain photosynthesis.'],
  ['How do I rotate my API key?', 'How can I rotate my API key?'],
  ['Where is my order?', 'Where is my order right now?'],
  ['Can I upgrade my plan in the middle of the month?', 'Can I upgrade my plan mid-month?'],
  ['What is the speed of light?', 'How fast is the speed of light?'],
  ['How do I merge two dictionaries in Python?', 'What is the way to merge two dictionaries in Python?'],
  ['Does the free tier include email support?', 'Is email support included in the free tier?'],
  ['How do I set up single sign-on?', 'How do I configure single sign-on?'],
  ['What time zone are your servers in?', 'Which time zone are your servers in?'],
  ['How do I contact sales?', 'How can I get in touch with sales?'],
  ['What is a good name for a golden retriever puppy?', 'Suggest a good name for a golden retriever puppy.'],
  ['How do I center a div in CSS?', 'How can I center a div with CSS?'],
  ['What is the population of Tokyo?', 'How many people live in Tokyo?'],
  ['How do I make my password stronger?', 'How can I make my password more secure?'],
  ['Why is the sky blue?', 'Why does the sky look blue?'],
  ['What are the benefits of regular exercise?', 'What benefits does regular exercise have?'],
  ['How do I undo the last commit in git?', 'How can I undo my last git commit?'],
  ['My invoice is wrong, who do I talk to?', 'Who do I talk to when my invoice is wrong?'],
  ['Can you recommend a good laptop for programming?', 'What is a good laptop for programming?'],
  ['How do I change the font size in the editor?', 'How can I change the editor font size?'],
  ['What is the refund policy?', "What's your refund policy?"],
  ['How many days do I have to return an item?', 'How many days do I have to return an item I bought?'],
  ['Do you ship internationally?', 'Do you ship to other countries internationally?'],
  ['Is there a student discount?', 'Do you offer a student discount?'],
  ['How do I connect my bank account?', 'How can I link my bank account?'],
  ['Why was my card declined?', 'Why did my card get declined?'],
  ['Write a limerick about a cat.', 'Write me a limerick about a cat.'],
  ['What is machine learning?', 'Can you explain what machine learning is?'],
  ['How do I list files in a directory in Linux?', 'How can I list the files in a Linux directory?'],
  ['What is the tallest mountain in the world?', 'Which mountain is the tallest in the world?'],
  ['How do I make a cup of green tea?', 'How should I make a cup of green tea?'],
  ['What causes inflation?', 'What are the causes of inflation?'],
  ['How do I keep my API keys secure?', 'What is the best way to keep my API keys secure?'],
  ['Is my data encrypted at rest?', 'Do you encrypt my data at rest?'],
  ['How do I generate a random number in JavaScript?', 'How can I generate a random number in JavaScript?'],
  ['What is the difference between a list and a tuple in Python?', 'In Python, what is the difference between a list and a tuple?'],
  ['Please summarize the benefits of meditation.', 'Summarize the benefits of meditation.'],
  ['When was the Eiffel Tower built?', 'In what year was the Eiffel Tower built?'],
  ['Who wrote Pride and Prejudice?', 'Who is the author of Pride and Prejudice?'],
  ['How do I stop my screen from turning off?', 'How can I stop my screen turning off?'],
  ['Can I pay with PayPal?', 'Is it possible to pay with PayPal?'],
  ['What is the maximum file size for uploads?', 'What is the max file size for an upload?'],
  ['How do I change my profile picture?', 'How can I update my profile picture?'],
  ['How do I improve my sleep?', 'How can I sleep better?'],
  ['Give me a recipe for pancakes.', 'Can you give me a pancake recipe?'],
  ['What is the time complexity of binary search?', "What's the time complexity of a binary search?"],
  ['How do I check which version of Python is installed?', 'How can I check what version of Python I have installed?'],
  // Case, contractions and request frames (a new user's tries).
  ['What is the capital of Peru?', 'what is the capital of peru'],
  ['How do I rotate my SSH key?', 'HOW DO I ROTATE MY SSH KEY?'],
  ["I can't log in to the dashboard.", 'I cannot log in to the dashboard.'],
  ['How do I pause my membership?', 'hi there, could you tell me how to pause my membership? thanks'],
];

/** Hand-written near misses: one small change that changes the answer. */
const NEAR: [Category, string, string][] = [
  // A hostile tester's false hits: operators, symbols and emoji, Unicode digits and accents, the order of numbers,
  // roles by pronoun or particle, -er/-ee, and/or, what a negation negates, one vs many.
  ['hostile', "What is 12 + 7?", "What is 12 - 7?"],
  ['hostile', "What is 144 / 12?", "What is 144 * 12?"],
  ['hostile', "What is 3 + 3 + 5?", "What is 3 + 5 + 5?"],
  ['hostile', "What should I wear when it is -10 degrees outside?", "What should I wear when it is 10 degrees outside?"],
  ['hostile', "Is -40 degrees colder than 40 degrees?", "Is 40 degrees colder than -40 degrees?"],
  ['hostile', "Is 1,5 kg of sugar too much for a cake?", "Is 15 kg of sugar too much for a cake?"],
  ['hostile', "What is 10² ?", "What is 10³ ?"],
  ['hostile', "What is the derivative of x²?", "What is the derivative of x³?"],
  ['hostile', "What is ½ of 10?", "What is ¼ of 10?"],
  ['hostile', "Is 0.1 + 0.2 == 0.3 in Python?", "Is 0.1 + 0.2 != 0.3 in Python?"],
  ['hostile', "Is x > 5 when x is 3?", "Is x < 5 when x is 3?"],
  ['hostile', "Is x ≥ 5 true when x is 5?", "Is x ≤ 5 true when x is 5?"],
  ['hostile', "What does this print?\n```python\nprint(3 > 2)\n```", "What does this print?\n```python\nprint(3 < 2)\n```"],
  ['hostile', "What does x += 2 do?", "What does x -= 2 do?"],
  ['hostile', "What does [1,2,3].map(x => x * 2) return?", "What does [1,2,3].map(x => x + 2) return?"],
  ['hostile', "Explain SELECT * FROM users WHERE age > 30", "Explain SELECT * FROM users WHERE age < 30"],
  ['hostile', "What is ７ times 8?", "What is ９ times 8?"],
  ['hostile', "What is ٣ times 4?", "What is ٥ times 4?"],
  ['hostile', "Is it ｎｏｔ safe to drink tap water in Mexico?", "Is it safe to drink tap water in Mexico?"],
  ['hostile', "What is the capital of Pérou?", "What is the capital of Pèrou?"],
  ['hostile', "Who is Müller?", "Who is Möller?"],
  ['hostile', "😀", "😢"],
  ['hostile', "What does 👍 mean?", "What does 👎 mean?"],
  ['hostile', "What colours are in the 🇫🇷 flag?", "What colours are in the 🇩🇪 flag?"],
  ['hostile', "Is 🍄 safe to eat?", "Is 🍓 safe to eat?"],
  ['hostile', "🐍 or ☕ for a beginner?", "🦀 or ☕ for a beginner?"],
  ['hostile', "How do I move files to Dropbox from Google Drive?", "How do I move files from Dropbox to Google Drive?"],
  ['hostile', "Convert 100 dollars from USD to EUR", "Convert 100 dollars to USD from EUR"],
  ['hostile', "Why does he hate her?", "Why does she hate him?"],
  ['hostile', "What should he wear to her wedding?", "What should she wear to his wedding?"],
  ['hostile', "Why did you lie to me?", "Why did I lie to you?"],
  ['hostile', "What should I say to my boss?", "What should my boss say to me?"],
  ['hostile', "What should an interviewer ask?", "What should an interviewee ask?"],
  ['hostile', "What rights does an employer have?", "What rights does an employee have?"],
  ['hostile', "Who hired Alice?", "Who was hired by Alice?"],
  ['hostile', "Which numbers below 20 are divisible by 2 and 3?", "Which numbers below 20 are divisible by 2 or 3?"],
  ['hostile', "Can I take ibuprofen and paracetamol?", "Can I take ibuprofen or paracetamol?"],
  ['hostile', "Why does the server crash when the cache is not full?", "Why does the server not crash when the cache is full?"],
  ['hostile', "When did Napoleon die?", "Where did Napoleon die?"],
  ['hostile', "How did Napoleon die?", "Why did Napoleon die?"],
  ['hostile', "Which countries were in the EU in 2010?", "Which countries are in the EU in 2010?"],
  ['hostile', "Did the Romans use soap?", "Do the Romans use soap?"],
  ['hostile', "Can I drink alcohol while taking antibiotics?", "Must I drink alcohol while taking antibiotics?"],
  ['hostile', "Can I eat raw eggs?", "Should I eat raw eggs?"],
  ['hostile', "What is the area of a right triangle?", "What is the area of a triangle?"],
  ['hostile', "Who is the current CEO of Apple?", "Who was the CEO of Apple?"],
  ['hostile', "Do many birds migrate?", "Do any birds migrate?"],
  ['hostile', "How do I delete a file?", "How do I delete files?"],
  ['hostile', "What day of the week was 1/2/2020?", "What day of the week was 2/1/2020?"],
  // A question word, the person, the modality, the tense, a light verb or a quantity word changed (a new user's tries).
  ['function_word', 'How do I reset my password?', 'Why do I need to reset my password?'],
  ['function_word', 'How do I reset my password?', 'Why do I want to reset my password?'],
  ['function_word', 'How do I reset my password?', 'How do they reset my password?'],
  ['function_word', 'How do I get a refund?', 'How do I give a refund?'],
  ['function_word', 'How do I make a payment?', 'How do I get a payment?'],
  ['function_word', 'How do I delete my account?', 'How do I delete your account?'],
  ['function_word', 'Can you book a flight for me?', 'Can I book a flight for you?'],
  ['function_word', 'Can I bring my dog?', 'Must I bring my dog?'],
  ['function_word', 'Can I cancel my subscription?', 'Do I need to cancel my subscription?'],
  ['function_word', 'Is the restaurant open this weekend?', 'Was the restaurant open this weekend?'],
  ['function_word', 'Are there any discounts for students?', 'Are there many discounts for students?'],
  ['function_word', 'How do I share a file with my team?', 'How do I share a file with their team?'],
  ['function_word', 'What do I do if my card is stolen?', 'What do they do if my card is stolen?'],
  ['function_word', 'Can he access my account?', 'Can I access his account?'],
  ['function_word', 'How do I use a gift card?', 'How do I get a gift card?'],
  ['function_word', 'Where do I send the contract?', 'When do I send the contract?'],
  ['function_word', 'Will the price go up next year?', 'Did the price go up last year?'],
  ['function_word', 'Should I email the manager?', 'Should the manager email me?'],
  ['negation', 'Delete the temporary files in the build folder.', 'Do not delete the temporary files in the build folder.'],
  ['negation', 'Which plans include priority support?', "Which plans don't include priority support?"],
  ['negation', 'Is it safe to run this migration on a live database?', 'Is it not safe to run this migration on a live database?'],
  ['negation', 'List the fruits that contain seeds.', 'List the fruits that contain no seeds.'],
  ['negation', 'Why does my phone charge overnight?', "Why doesn't my phone charge overnight?"],
  ['negation', 'Write a story where the hero wins.', 'Write a story where the hero never wins.'],
  ['negation', 'Which countries require a visa for US citizens?', 'Which countries do not require a visa for US citizens?'],
  ['negation', 'Can I cancel after the trial?', "Can't I cancel after the trial?"],
  ['order', 'Convert 100 USD to EUR.', 'Convert 100 EUR to USD.'],
  ['order', 'How many inches are in a foot?', 'How many feet are in an inch?'],
  ['order', 'Should I run the migrations before deploying?', 'Should I deploy before running the migrations?'],
  ['order', 'Translate "good morning" from English to French.', 'Translate "good morning" from French to English.'],
  ['order', 'Is Python faster than Java?', 'Is Java faster than Python?'],
  ['order', 'Which is bigger, the sun or the moon? Answer: is the sun bigger than the moon?', 'Which is bigger, the sun or the moon? Answer: is the moon bigger than the sun?'],
  ['order', 'How do I migrate from MySQL to Postgres?', 'How do I migrate from Postgres to MySQL?'],
  ['order', 'Does the frontend depend on the backend?', 'Does the backend depend on the frontend?'],
  ['order', 'Merge the feature branch into main.', 'Merge main into the feature branch.'],
  ['order', 'Did the Renaissance come before the Middle Ages?', 'Did the Middle Ages come before the Renaissance?'],
  ['order', 'What is the flight time from London to Sydney?', 'What is the flight time from Sydney to London?'],
  ['order', 'Is a square a rectangle?', 'Is a rectangle a square?'],
  ['order', 'Does the dog chase the cat in the story?', 'Does the cat chase the dog in the story?'],
  ['order', 'Should the buyer pay the seller first?', 'Should the seller pay the buyer first?'],
  ['order', 'Copy the files from the server to my laptop.', 'Copy the files from my laptop to the server.'],
  ['quantity', 'Give me 3 ideas for a birthday party.', 'Give me 10 ideas for a birthday party.'],
  ['quantity', 'List three benefits of exercise.', 'List five benefits of exercise.'],
  ['quantity', 'Write a haiku with two stanzas.', 'Write a haiku with four stanzas.'],
  ['quantity', 'What is 15% of 80?', 'What is 15% of 60?'],
  ['quantity', 'I need a table for two people tonight.', 'I need a table for six people tonight.'],
  ['unit', 'What is 10 miles in kilometers?', 'What is 10 miles in meters?'],
  ['unit', 'How much is 5 kg of rice in pounds?', 'How much is 5 kg of rice in ounces?'],
  ['unit', 'What is 30 degrees Celsius in Fahrenheit?', 'What is 30 degrees Celsius in Kelvin?'],
  ['unit', 'How many calories are in 100 grams of rice?', 'How many calories are in 100 cups of rice?'],
  ['date', 'What happened on 4 July 1776?', 'What happened on 14 July 1789?'],
  ['date', "What's on the schedule for Monday?", "What's on the schedule for Tuesday?"],
  ['date', 'What was the weather like yesterday?', 'What will the weather be like tomorrow?'],
  ['date', 'Show me the sales report for last week.', 'Show me the sales report for next week.'],
  ['date', 'Who won the World Cup in 2014?', 'Who won the World Cup in 2018?'],
  ['date', 'What are the opening hours on weekends?', 'What are the opening hours on weekdays?'],
  ['id', 'What is the status of order 48213?', 'What is the status of order 48214?'],
  ['id', 'Close ticket ABC-1042.', 'Close ticket ABC-1043.'],
  ['id', 'Show the profile of user jdoe.', 'Show the profile of user jsmith.'],
  ['id', 'Refund invoice INV-7731.', 'Refund invoice INV-7713.'],
  ['id', 'Look up the tracking number 1Z999AA10123456784.', 'Look up the tracking number 1Z999AA10123456785.'],
  ['entity', 'What is the capital of France?', 'What is the capital of Germany?'],
  ['entity', 'what is the capital of france', 'what is the capital of spain'],
  ['entity', 'Who founded Microsoft?', 'Who founded Apple?'],
  ['entity', 'How tall is Mount Everest?', 'How tall is Mount Kilimanjaro?'],
  ['entity', 'how do i cook salmon in the oven', 'how do i cook chicken in the oven'],
  ['entity', 'What does a cat eat?', 'What does a dog eat?'],
  ['entity', 'Explain the rules of chess.', 'Explain the rules of checkers.'],
  ['comparative', 'What is the cheapest plan?', 'What is the most expensive plan?'],
  ['comparative', 'Which uses more memory, Redis or Memcached?', 'Which uses less memory, Redis or Memcached?'],
  ['comparative', 'What is the largest planet in the solar system?', 'What is the smallest planet in the solar system?'],
  ['comparative', 'Which option is better for a small team?', 'Which option is worse for a small team?'],
  ['comparative', 'What is the fastest way to learn Spanish?', 'What is the slowest way to learn Spanish?'],
  ['comparative', 'Which city has the most rain in Europe?', 'Which city has the least rain in Europe?'],
  ['comparative', 'Which plan has fewer limits?', 'Which plan has more limits?'],
  ['language', 'What is the capital of France?', 'Quelle est la capitale de la France ?'],
  ['language', 'How do I reset my password?', '¿Cómo restablezco mi contraseña?'],
  ['language', 'Explain photosynthesis.', 'Erkläre die Photosynthese.'],
  ['language', 'Write a short poem about the sea.', 'Scrivi una breve poesia sul mare.'],
  ['language', 'What time is it in Tokyo?', 'Que horas são em Tóquio?'],
  ['language', 'Translate this into French: thank you.', 'Translate this into Spanish: thank you.'],
  ['language', 'How do I cancel my subscription?', 'Comment puis-je annuler mon abonnement ?'],
  ['language', 'Where is my order?', '¿Dónde está mi pedido?'],
  ['language', 'What are your opening hours?', 'Wie sind Ihre Öffnungszeiten?'],
  ['language', 'Can I get a refund?', 'Posso avere un rimborso?'],
  ['language', 'How do I change my password?', 'Hoe verander ik mijn wachtwoord?'],
  ['language', 'What is the weather like today?', 'Какая сегодня погода?'],
  ['language', 'Tell me a joke.', '给我讲个笑话。'],
  ['language', 'What is the capital of Japan?', '日本の首都はどこですか？'],
  ['language', 'Do you ship to Canada?', 'Livrez-vous au Canada ?'],
  ['language', 'Is there a free trial?', '¿Hay una prueba gratuita?'],
  ['language', 'What is a black hole?', 'Was ist ein schwarzes Loch?'],
  ['language', 'Reply in English: what is an API?', 'Reply in German: what is an API?'],
  ['language', 'Answer in French: how do I make bread?', 'Answer in Italian: how do I make bread?'],
  ['language', 'Explain recursion simply.', 'Explica la recursión de forma sencilla.'],
  ['code_language', 'How do I reverse a string in Python?', 'How do I reverse a string in JavaScript?'],
  ['code_language', 'Write a hello world program in C.', 'Write a hello world program in R.'],
  ['code_language', 'how do i read a file in rust', 'how do i read a file in go'],
  ['code_language', 'Sort a list of numbers in Java.', 'Sort a list of numbers in Kotlin.'],
  ['topic', 'How do I reset my password?', 'How do I reset my router?'],
  ['topic', 'How does pricing work at ACME?', 'How does discounts work at ACME?'],
  ['topic', 'What are the symptoms of the flu?', 'What are the symptoms of a cold?'],
  ['topic', 'Recommend a book about history.', 'Recommend a movie about history.'],
  ['topic', 'How do I update my credit card?', 'How do I update my shipping address?'],
  ['topic', 'What is the refund policy?', 'What is the privacy policy?'],
  ['topic', 'How do I install the desktop app?', 'How do I uninstall the desktop app?'],
  ['topic', 'Why is my upload slow?', 'Why is my download slow?'],
  ['topic', 'How do I log in?', 'How do I log out?'],
  ['topic', 'Can I import contacts from a CSV?', 'Can I export contacts to a CSV?'],
  ['topic', 'How do I enable notifications?', 'How do I disable notifications?'],
  ['topic', 'How do I lock my account?', 'How do I unlock my account?'],
];

/** Tasks for generated paraphrases (phrased to follow "How do I …"). */
const TASKS = ['reset my password', 'cancel my order', 'change my email address', 'export my contacts', 'invite a new user', 'close my account',
  'download a receipt', 'update my payment card', 'turn off notifications', 'connect a custom domain', 'restore a deleted file', 'create an API token',
  'change the language of the app', 'report a bug', 'transfer ownership of a project', 'upgrade to the team plan', 'set a spending limit',
  'schedule a report', 'archive old messages', 'add a second admin', 'change my username', 'reactivate my subscription', 'enable dark mode',
  'backup my database', 'rename a workspace', 'remove a payment method', 'join a meeting from my phone', 'share a folder with a client',
  'restart the server', 'track my package'];

/** Tasks asked only by the 'topic' pairs: each against the next. */
const OTHER_TASKS = ['print a shipping label', 'change my delivery slot', 'split a bill', 'pause my membership', 'claim a warranty', 'apply a coupon',
  'verify my identity', 'set up direct debit', 'request a callback', 'add a gift message', 'merge two accounts', 'change my seat', 'book a demo',
  'leave a review', 'order a replacement part'];

/** Generated paraphrase templates: each task is asked one way, then another. */
const PARA_TEMPLATES: [string, string][] = [
  ['How do I {t}?', 'How can I {t}?'],
  ['How do I {t}?', 'What is the way to {t}?'],
  ['How can I {t}?', 'Can you tell me how to {t}?'],
  ['How do I {t}?', 'I want to {t}. How do I do that?'],
  ['Please explain how to {t}.', 'How do I {t}?'],
];

const CURRENCIES = ['USD', 'EUR', 'GBP', 'JPY', 'CHF', 'CAD', 'AUD', 'INR'];
const UNITS: [string, string][] = [['miles', 'kilometers'], ['pounds', 'kilograms'], ['inches', 'centimeters'], ['gallons', 'liters'], ['feet', 'meters'],
  ['ounces', 'grams'], ['acres', 'hectares'], ['yards', 'meters']];
const CITIES = ['London', 'Paris', 'Berlin', 'Madrid', 'Rome', 'Tokyo', 'Sydney', 'Toronto', 'Chicago', 'Dubai'];
const STEPS: [string, string][] = [['run the tests', 'merge the pull request'], ['back up the database', 'upgrade the server'], ['rinse the rice', 'soak the rice'],
  ['stretch', 'run'], ['apply the primer', 'paint the wall'], ['sign the contract', 'pay the deposit'], ['update the firmware', 'reset the device'],
  ['water the plants', 'add fertilizer']];
const LANGS = ['English', 'French', 'Spanish', 'German', 'Italian', 'Japanese'];
const COUNTRIES = ['France', 'Germany', 'Spain', 'Italy', 'Japan', 'Brazil', 'Canada', 'Egypt', 'India', 'Mexico'];
const COMPARE: [string, string][] = [['cheapest', 'most expensive'], ['fastest', 'slowest'], ['largest', 'smallest'], ['oldest', 'newest'],
  ['best', 'worst'], ['highest', 'lowest'], ['most popular', 'least popular'], ['safest', 'most dangerous']];
const COMPARED = ['plan', 'car', 'laptop', 'city in Europe', 'programming language', 'airline'];
const WEEKDAYS = ['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday', 'Sunday'];
const CODE_LANGS = ['Python', 'JavaScript', 'Rust', 'Go', 'Java', 'Ruby', 'TypeScript', 'C#'];
const CODE_TASKS = ['parse a JSON file', 'read a CSV file', 'make an HTTP request', 'sort a list of numbers', 'remove duplicates from a list'];
const FOODS = ['salmon', 'chicken', 'tofu', 'potatoes', 'broccoli', 'pork chops', 'lamb', 'shrimp'];
const TOOLS = ['get_weather', 'search_docs', 'create_ticket', 'send_email'];

/** Each item with the next one (wrapping): pairs of different items from a list. */
function neighbours<T>(xs: readonly T[]): [T, T][] {
  return xs.map((x, i) => [x, xs[(i + 1) % xs.length]!] as [T, T]);
}

function generated(): Pair[] {
  const out: Pair[] = [];
  const add = (category: Category, a: string | Ask, b: string | Ask) =>
    out.push({ category, a: typeof a === 'string' ? { user: a } : a, b: typeof b === 'string' ? { user: b } : b, hand: false });
  TASKS.forEach((t, i) => {
    const [x, y] = PARA_TEMPLATES[i % PARA_TEMPLATES.length]!;
    add('paraphrase', x.replace('{t}', t), y.replace('{t}', t));
  });
  // The same support question inside the same conversation, reworded.
  TASKS.slice(0, 10).forEach((t) => add('paraphrase', { system: SUPPORT, history: ['Hi, I have a question.', 'Sure, how can I help?'], user: `How do I ${t}?` },
    { system: SUPPORT, history: ['Hi, I have a question.', 'Sure, how can I help?'], user: `How can I ${t}?` }));

  // Different tasks asked the same way: the classic 'entirely different question' false hit.
  neighbours(OTHER_TASKS).forEach(([x, y]) => add('topic', `How do I ${x}?`, `How do I ${y}?`));
  OTHER_TASKS.forEach((t) => add('negation', `How do I ${t}?`, `How do I not ${t}?`));
  OTHER_TASKS.forEach((t) => add('negation', `Should I ${t}?`, `Should I never ${t}?`));

  neighbours(CURRENCIES).forEach(([x, y]) => add('order', `Convert 250 ${x} to ${y}.`, `Convert 250 ${y} to ${x}.`));
  neighbours(CURRENCIES).forEach(([x, y]) => add('order', `What is the exchange rate from ${x} to ${y}?`, `What is the exchange rate from ${y} to ${x}?`));
  UNITS.forEach(([x, y]) => add('order', `How many ${x} are in one of ${y}?`, `How many ${y} are in one of ${x}?`));
  UNITS.forEach(([x, y]) => add('order', `convert ${x} to ${y}`, `convert ${y} to ${x}`));
  neighbours(CITIES).forEach(([x, y]) => add('order', `How long is the train from ${x} to ${y}?`, `How long is the train from ${y} to ${x}?`));
  STEPS.forEach(([x, y]) => add('order', `Should I ${x} before I ${y}?`, `Should I ${y} before I ${x}?`));
  STEPS.forEach(([x, y]) => add('order', `Is it better to ${x} after I ${y}?`, `Is it better to ${y} after I ${x}?`));
  neighbours(LANGS).forEach(([x, y]) => add('order', `Translate "see you soon" from ${x} into ${y}.`, `Translate "see you soon" from ${y} into ${x}.`));
  neighbours(COUNTRIES).slice(0, 6).forEach(([x, y]) => add('order', `Is ${x} larger than ${y}?`, `Is ${y} larger than ${x}?`));

  [[2, 3], [5, 7], [10, 12], [1, 4], [20, 25], [100, 150]].forEach(([x, y]) => add('quantity', `Suggest ${x} names for a coffee shop.`, `Suggest ${y} names for a coffee shop.`));
  [['two', 'three'], ['four', 'six'], ['five', 'ten'], ['one', 'two'], ['seven', 'eight']].forEach(([x, y]) => add('quantity', `Write ${x} tips for better sleep.`, `Write ${y} tips for better sleep.`));
  [[3, 4], [12, 13], [0.5, 0.25], [1000, 10000]].forEach(([x, y]) => add('quantity', `What is the square root of ${x}?`, `What is the square root of ${y}?`));

  UNITS.forEach(([x, y]) => add('unit', `What is 12 ${x} in ${y}?`, `What is 12 ${y} in ${x}?`));
  neighbours(UNITS.map((u) => u[1])).forEach(([x, y]) => add('unit', `How heavy is a box that measures 3 ${x}?`, `How heavy is a box that measures 3 ${y}?`));

  neighbours(WEEKDAYS).forEach(([x, y]) => add('date', `Is the office open on ${x}?`, `Is the office open on ${y}?`));
  [['2019', '2020'], ['2021', '2022'], ['1999', '2009'], ['2023', '2024']].forEach(([x, y]) => add('date', `What were the biggest news stories of ${x}?`, `What were the biggest news stories of ${y}?`));
  [['3 March', '4 March'], ['January 15', 'January 16'], ['2024-05-01', '2024-06-01']].forEach(([x, y]) => add('date', `Book a meeting room for ${x}.`, `Book a meeting room for ${y}.`));
  [['this morning', 'this evening'], ['last month', 'next month'], ['today', 'tomorrow']].forEach(([x, y]) => add('date', `What is on my calendar ${x}?`, `What is on my calendar ${y}?`));

  [['A-1001', 'A-1002'], ['7781', '7718'], ['ord_9f3k2', 'ord_9f3k3'], ['#5521', '#5522'], ['cus_ABCD', 'cus_ABCE'], ['x7', 'y7']].forEach(([x, y]) => {
    add('id', `Why was payment ${x} declined?`, `Why was payment ${y} declined?`);
    add('id', `Cancel the subscription for account ${x}.`, `Cancel the subscription for account ${y}.`);
  });

  neighbours(COUNTRIES).forEach(([x, y]) => add('entity', `What is the national dish of ${x}?`, `What is the national dish of ${y}?`));
  neighbours(COUNTRIES).slice(0, 5).forEach(([x, y]) => add('entity', `what language do people speak in ${x.toLowerCase()}`, `what language do people speak in ${y.toLowerCase()}`));
  neighbours(FOODS).forEach(([x, y]) => add('entity', `How long should I bake ${x}?`, `How long should I bake ${y}?`));

  COMPARE.forEach(([x, y], i) => {
    const thing = COMPARED[i % COMPARED.length]!;
    add('comparative', `What is the ${x} ${thing}?`, `What is the ${y} ${thing}?`);
  });
  [['more', 'less'], ['more', 'fewer'], ['higher', 'lower'], ['bigger', 'smaller'], ['faster', 'slower']].forEach(([x, y]) =>
    add('comparative', `Which database needs ${x} RAM for this workload?`, `Which database needs ${y} RAM for this workload?`));

  CODE_TASKS.forEach((t, i) => {
    const [x, y] = neighbours(CODE_LANGS)[i]!;
    add('code_language', `How do I ${t} in ${x}?`, `How do I ${t} in ${y}?`);
  });

  // The same question under a different system prompt, tool set or earlier conversation.
  ['How do I reset my password?', 'What is your refund policy?', 'Summarize our conversation so far.', 'What should I do next?'].forEach((q) => {
    add('system_prompt', { system: SUPPORT, user: q }, { system: 'You are a pirate. Answer in pirate speak.', user: q });
    add('system_prompt', { system: 'Answer in one word.', user: q }, { system: 'Answer in detail, with examples.', user: q });
    add('tools', { system: SUPPORT, tools: TOOLS.slice(0, 2), user: q }, { system: SUPPORT, tools: TOOLS.slice(2), user: q });
    add('tools', { system: SUPPORT, user: q }, { system: SUPPORT, tools: ['create_ticket'], user: q });
  });
  const talk = ['Tell me about the Eiffel Tower.', 'The Eiffel Tower is a wrought-iron tower in Paris, finished in 1889.'];
  [['How tall is it?', 'How old is it?'], ['Who designed it?', 'Who owns it?'], ['And what about its weight?', 'And what about its height?'],
    ['Can I visit it at night?', 'Can I visit it in winter?'], ['Is it open today?', 'Is it open tomorrow?'], ['Yes, tell me more.', 'No, that is enough.']]
    .forEach(([x, y]) => add('last_turn', { history: talk, user: x! }, { history: talk, user: y! }));
  const plan = ['I am planning a trip to Japan.', 'Great! What would you like to know?'];
  [['What should I pack?', 'What should I eat?'], ['How much money should I bring?', 'How much time should I spend?'], ['Is it safe for kids?', 'Is it cheap for students?']]
    .forEach(([x, y]) => add('last_turn', { history: plan, user: x! }, { history: plan, user: y! }));
  return out;
}

export function evalPairs(): Pair[] {
  const hand: Pair[] = [
    ...PARAPHRASES.map(([a, b]) => ({ category: 'paraphrase' as const, a: { user: a }, b: { user: b }, hand: true })),
    ...NEAR.map(([category, a, b]) => ({ category, a: { user: a }, b: { user: b }, hand: true })),
  ];
  return [...hand, ...generated()];
}
