-- Read the stats; trims the window and expired permits but changes no decision state.
--#include common
return reply(1, 0, '', {state(), state(), ''})
