-- Where a user is in their life (issue 28: user lifecycle): 'active'; 'suspended' (every token
-- of the user, device tokens included, is refused, and their devices cannot refresh; undone by
-- resuming); 'removed' (final: suspended for good and every device deauthorized; the archive
-- stays, to follow the tenant's retention and holds). `changed_unix` is when it last moved.
ALTER TABLE users ADD COLUMN state TEXT NOT NULL DEFAULT 'active';
ALTER TABLE users ADD COLUMN changed_unix BIGINT;
