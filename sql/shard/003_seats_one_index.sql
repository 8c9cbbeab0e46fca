-- The seats table keeps one index, its primary key (show_id, label). Every seat write reaches
-- its seats through it, so rows are locked in label order, the order lock_seats() uses too.
-- With a second index led by show_id the planner could read a small show's seats in map
-- order instead (it did, once shows of a few seats dominated the statistics), and two
-- writers taking seats in different orders can deadlock. The map is read whole and sorted
-- by ord in memory: a few milliseconds for the largest shows.
DROP INDEX IF EXISTS seats_in_map_order;
