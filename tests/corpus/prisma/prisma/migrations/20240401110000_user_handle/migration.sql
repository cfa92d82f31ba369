-- AlterTable
ALTER TABLE "User" ADD COLUMN "handle" TEXT;

-- Backfill, written by hand after `prisma migrate dev --create-only`
BEGIN;
UPDATE "User" SET "handle" = lower(split_part("email", '@', 1)) WHERE "handle" IS NULL;
COMMIT;

-- CreateIndex
CREATE UNIQUE INDEX "User_handle_key" ON "User"("handle");
